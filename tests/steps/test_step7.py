"""Step 7 (reset.sh) against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError, StepResult
from steps.step7_reset import date_files, reset
from tests.steps import DATE, ROUND, RUNS, commands, open_remote

KW = {"date": DATE, "round": ROUND, "max_wait_minutes": 1, "poll_seconds": 0.1}


def place_date_files(site: RemoteSite) -> list[tuple[Path, Path | None]]:
    """This date's files of steps 1–6, where those steps leave them: (file, archive dir)."""
    out = []
    for src, name, dst in date_files(site.paths(ROUND), RUNS):
        path = Path(src) / name
        path.write_text(f"{name} of {DATE}\n")
        out.append((path, Path(dst) if dst else None))
    return out


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(local_settings, tmp_path / "downloads")


def _run(site: RemoteSite, run_key: str = "rk7", approved_by: str = "alice") -> StepResult:
    return reset(site, run_key=run_key, approved_by=approved_by, **KW)


def _untouched(files: list[tuple[Path, Path | None]]) -> bool:
    return all(path.exists() for path, _ in files)


def test_reset_archives_this_dates_files_and_reports_it(site: RemoteSite, sim: Any) -> None:
    files = place_date_files(site)
    p = site.paths(ROUND)
    result = _run(site)
    assert result.outcome == Outcome.SUCCESS and result.data["approved_by"] == "alice"
    for path, archive in files:
        assert not path.exists()
        if archive is not None:
            assert (archive / path.name).exists()
            assert str(archive / path.name) in result.data["archived"]
    # HIST no longer holds this date's hist files; its check plots were deleted
    assert not list(Path(p.hist).glob("hist854*.root"))
    assert sorted(result.data["deleted"]) == sorted(f"{p.hist}/check{r}.png" for r in RUNS)
    assert result.data["left_behind"] == [] and len(result.data["moved"]) == len(files)
    # stderr of the script is reported: e.g. `plot/` had nothing to move
    assert any("cannot stat" in ln for ln in result.data["stderr_lines"])
    today = Path(result.data["snapshots"][0]).name
    assert (Path(p.inj) / "InjSigIntervalCal" / today).exists()
    assert (Path(p.search_peak) / "time_final" / today).exists()
    # a retry of the same flow run re-attaches; reset.sh does not run again
    extra = Path(p.base) / "plot" / "run_extra.txt"
    extra.write_text("would be moved by a second reset.sh\n")
    again = _run(site)
    assert again.data["started_now"] is False and "re-attached" in again.message
    assert extra.exists()


@pytest.mark.parametrize("who", ["", "   "])
def test_reset_without_approval_is_refused(local_site: RemoteSite, sim: Any, who: str) -> None:
    files = place_date_files(local_site)
    before = commands(local_site)
    with pytest.raises(StepError) as exc:
        _run(local_site, approved_by=who)
    assert exc.value.result.error.code == 20 and exc.value.action == "manual"
    assert commands(local_site) == before  # nothing was sent to the site
    assert _untouched(files)


def test_missing_script_is_7101(local_site: RemoteSite) -> None:
    files = place_date_files(local_site)
    (Path(local_site.paths(ROUND).inj) / "reset.sh").unlink()
    with pytest.raises(StepError) as exc:
        _run(local_site)
    assert exc.value.result.error.code == 7101 and exc.value.action == "manual"
    assert _untouched(files)


def test_script_not_executable_is_7102(local_site: RemoteSite) -> None:
    files = place_date_files(local_site)
    os.chmod(Path(local_site.paths(ROUND).inj) / "reset.sh", 0o644)
    with pytest.raises(StepError) as exc:
        _run(local_site)
    assert exc.value.result.error.code == 7102 and exc.value.action == "manual"
    assert _untouched(files)


def test_missing_archive_dir_is_refused_naming_it(local_site: RemoteSite) -> None:
    files = place_date_files(local_site)
    raw = Path(local_site.paths(ROUND).search_peak) / "raw_shield"
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
    with pytest.raises(StepError) as exc:
        _run(local_site)
    res = exc.value.result
    assert res.error.code == 70 and exc.value.action == "manual"
    assert res.data["missing_dirs"] == [str(raw)] and str(raw) in res.message
    assert _untouched(files)


def test_script_failure_is_7100(local_site: RemoteSite, sim: Any) -> None:
    place_date_files(local_site)
    sim.set_faults(script_exit={"reset.sh": 2})
    with pytest.raises(StepError) as exc:
        _run(local_site)
    assert exc.value.result.error.code == 7100 and exc.value.action == "retry"
    assert exc.value.result.data["exit_code"] == 2


def test_files_left_in_place_are_reported_72(site: RemoteSite) -> None:
    files = place_date_files(site)
    tmp = Path(site.paths(ROUND).hist) / "tmp"
    os.chmod(tmp, 0o555)  # the login user cannot move into it: `mv hist*.root tmp/` fails
    try:
        with pytest.raises(StepError) as exc:
            _run(site)
    finally:
        os.chmod(tmp, 0o755)
    res = exc.value.result
    assert res.error.code == 72 and exc.value.action == "manual"
    hist = site.paths(ROUND).hist
    assert res.data["left_behind"] == sorted(f"{hist}/hist{r}.root" for r in RUNS)
    assert any("hist" in ln and "Permission denied" in ln for ln in res.data["stderr_lines"])
    assert not files[-1][0].exists()  # the rest of the script still ran
