"""Setting aside the runs of a failed date (steps/step8_exclusion.py) over the real sshd pair.

The round holds two dates as steps 1.1–2.4 leave them (``sim.prepare``: interval.txt lines,
calibConst IST files, hist files) plus the lines steps 3.2/5.2/5.3 would have added to
window.dat and ets_cut.txt and the ETS_cut shield files, written directly in the sim's
formats (running the batch stages would only make this slower). Date B is set aside.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError
from steps.step8_exclusion import set_aside_runs
from tests.steps import ROUND, commands, open_remote

DATE_A, RUNS_A = "250625", [85410, 85411, 85412, 85413, 85414]
DATE_B, RUNS_B = "250626", [85420, 85421, 85422]
RUN_KEY = "3f1c9a7e-5b2d-4c8e-9f00-1234567890ab"
TAG = RUN_KEY[:12]

WINDOW_A = "85411     0.48     4.16     21.79     22.39"
WINDOW_B = "85421     0.52     4.25     21.85     22.45"
ETS_A = "85412   312.004   313.204   1401.220   1401.970"
ETS_B = "85421   120.500   121.700   998.125   998.875"


def _own(sim: Any, *paths: Path) -> None:
    owner = sim.root.stat()
    for p in paths:
        os.chown(p, owner.st_uid, owner.st_gid)


@pytest.fixture
def round_files(sim: Any) -> dict[str, Any]:
    """Two dates in the round's cumulative files; returns the paths and the texts before."""
    sim.prepare(DATE_A, ROUND)
    sim.prepare(DATE_B, ROUND)
    window = sim.stage_dir("search_peak") / "window.dat"
    ets = sim.stage_dir("ETS_cut") / "ets_cut.txt"
    with window.open("a") as fh:  # 3.2 of A, then 3.2 of B (B's line appended twice)
        fh.write(f"{WINDOW_A}\n{WINDOW_B}\n{WINDOW_B}\n")
    ets.write_text(ets.read_text() + f"{ETS_A}\n{ETS_B}\n")  # 5.3 keeps it sorted
    shields = [
        sim.stage_dir("ETS_cut") / "shield85412.txt",
        sim.stage_dir("ETS_cut") / "shield85421.txt",
        sim.stage_dir("search_peak") / "shield_run85421.txt",
    ]
    shields[0].write_text(f"{ETS_A}\n")
    shields[1].write_text(f"{ETS_B}\n")
    shields[2].write_text(f"{WINDOW_B}\n")
    _own(sim, *shields)
    files = {
        "interval": sim.inj(ROUND) / "interval.txt",
        "window": window,
        "ets": ets,
    }
    return {"files": files, "before": {k: p.read_text() for k, p in files.items()}}


@pytest.fixture
def site(ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(ssh_settings, tmp_path / "downloads")


def _without(text: str, runs: list[int]) -> str:
    keep = [ln for ln in text.splitlines() if not (ln.split() and int(ln.split()[0]) in runs)]
    return "".join(f"{ln}\n" for ln in keep)


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bak-*"))


def test_set_aside_removes_the_lines_and_moves_the_files_once(
    site: RemoteSite, sim: Any, round_files: dict[str, Any]
) -> None:
    files, before = round_files["files"], round_files["before"]
    calib = sim.inj(ROUND) / "calibConst"
    result = set_aside_runs(
        site, round=ROUND, runs=[85422, 85420, 85421], run_key=RUN_KEY, reason_tag="date-failed"
    )
    assert result.outcome == Outcome.SUCCESS and result.data["changed"] is True
    assert result.data["runs"] == RUNS_B

    # Exact contents after: date A and the older dates untouched, in their order.
    assert files["interval"].read_text() == (
        "85001 15000000\n85002 15000000\n" + "".join(f"{r} 15000000\n" for r in RUNS_A)
    )
    assert (
        files["window"].read_text() == f"85001     0.50     4.20     21.80     22.40\n{WINDOW_A}\n"
    )
    assert files["ets"].read_text() == f"85001   1200.500   1201.700\n{ETS_A}\n"

    # One backup per changed file, next to it, holding the text before.
    for key, path in files.items():
        (backup,) = _backups(path)
        assert re.fullmatch(rf"{path.name}\.bak-{TAG}-\d{{12}}", backup.name)
        assert backup.read_text() == before[key]
        entry = result.data["files"][str(path)]
        assert entry["backup"] == str(backup) and entry["found"] is True
    removed = {Path(f).name: v["removed"] for f, v in result.data["files"].items()}
    assert removed == {
        "interval.txt": [f"{r} 15000000" for r in RUNS_B],
        "window.dat": [WINDOW_B, WINDOW_B],
        "ets_cut.txt": [ETS_B],
    }
    assert result.data["lines_removed"] == 6

    # Per-run files moved into excluded/ beside them; date A's stay.
    for r in RUNS_B:
        assert not (calib / f"InjSigTime_00{r}_720.root").exists()
        assert (calib / "excluded" / f"InjSigTime_00{r}_720.root").read_text() == f"root IST {r}\n"
        assert (sim.hist(ROUND) / "excluded" / f"hist{r}.root").is_file()
        assert not (sim.hist(ROUND) / f"hist{r}.root").exists()
    for r in RUNS_A:
        assert (calib / f"InjSigTime_00{r}_720.root").is_file()
        assert (sim.hist(ROUND) / f"hist{r}.root").is_file()
    ets_dir, sp_dir = sim.stage_dir("ETS_cut"), sim.stage_dir("search_peak")
    assert (ets_dir / "excluded" / "shield85421.txt").read_text() == f"{ETS_B}\n"
    assert (sp_dir / "excluded" / "shield_run85421.txt").is_file()
    assert (ets_dir / "shield85412.txt").is_file() and not (ets_dir / "shield85421.txt").exists()
    moved = {(Path(m["from"]).name, Path(m["to"]).parent.name) for m in result.data["moved"]}
    assert len(result.data["moved"]) == 3 * 2 + 2 and all(d == "excluded" for _, d in moved)
    assert str(ets_dir / "shield85420.txt") in result.data["not_found"]
    assert result.data["runs_without_lines"] == []
    log = (sim.inj(ROUND) / "set_aside.log").read_text().splitlines()
    assert len(log) == 1 and log[0].endswith(f"{RUN_KEY} date-failed runs: 85420 85421 85422")

    # Twice: nothing changes, and the result says so.
    snapshot = {k: p.read_text() for k, p in files.items()}
    again = set_aside_runs(
        site, round=ROUND, runs=RUNS_B, run_key=RUN_KEY, reason_tag="date-failed"
    )
    assert again.data["changed"] is False and "nothing to change" in again.message
    assert again.data["moved"] == [] and again.data["lines_removed"] == 0
    assert len(again.data["already_set_aside"]) == len(result.data["moved"])
    assert again.data["runs_without_lines"] == RUNS_B
    assert {k: p.read_text() for k, p in files.items()} == snapshot
    assert all(len(_backups(p)) == 1 for p in files.values())
    assert len((sim.inj(ROUND) / "set_aside.log").read_text().splitlines()) == 1


def test_a_taken_name_in_excluded_is_a_conflict_and_nothing_is_overwritten(
    site: RemoteSite, sim: Any, round_files: dict[str, Any]
) -> None:
    calib = sim.inj(ROUND) / "calibConst"
    (calib / "excluded").mkdir()
    taken = calib / "excluded" / "InjSigTime_0085420_720.root"
    taken.write_text("set aside earlier\n")
    _own(sim, calib / "excluded", taken)
    with pytest.raises(StepError) as exc:
        set_aside_runs(site, round=ROUND, runs=RUNS_B, run_key="rk-conflict", reason_tag="t")
    res = exc.value.result
    assert res.error.code == 72 and exc.value.action == "manual"
    assert [c["to"] for c in res.data["conflicts"]] == [str(taken)]
    assert taken.read_text() == "set aside earlier\n"
    assert (calib / "InjSigTime_0085420_720.root").is_file()  # left in place
    # Everything else was done.
    assert (calib / "excluded" / "InjSigTime_0085421_720.root").is_file()
    assert "85420" not in round_files["files"]["interval"].read_text()


def test_a_missing_cumulative_file_is_reported_not_created(
    site: RemoteSite, sim: Any, round_files: dict[str, Any]
) -> None:
    window = round_files["files"]["window"]
    window.unlink()
    result = set_aside_runs(site, round=ROUND, runs=[85421], run_key="rk-missing", reason_tag="t")
    assert not window.exists() and not _backups(window)
    assert result.data["files"][str(window)] == {"found": False, "removed": [], "backup": None}
    assert str(window) in result.data["not_found"]
    assert result.data["files"][str(round_files["files"]["ets"])]["removed"] == [ETS_B]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"runs": []}, "non-empty"),
        ({"runs": ["85420"]}, "invalid run"),
        ({"runs": [True]}, "invalid run"),
        ({"runs": [8542]}, "invalid run"),
        ({"runs": [85420, 1234567890]}, "invalid run"),
        ({"runs": 85420}, "non-empty"),
        ({"round": "round18; rm -rf ~"}, "round"),
        ({"run_key": "a b"}, "job key"),
        ({"reason_tag": "x; touch /tmp/pwned"}, "reason_tag"),
        ({"reason_tag": ""}, "reason_tag"),
    ],
)
def test_bad_input_is_refused_before_any_remote_command(
    site: RemoteSite, sim: Any, kwargs: dict[str, Any], word: str
) -> None:
    args: dict[str, Any] = {
        "round": ROUND,
        "runs": RUNS_B,
        "run_key": "rk-bad",
        "reason_tag": "t",
        **kwargs,
    }
    with pytest.raises(StepError) as exc:
        set_aside_runs(site, **args)
    assert exc.value.result.error.code == 20 and word in exc.value.result.message
    assert commands(site) == 0 and site.transport.stats.sessions == 0
