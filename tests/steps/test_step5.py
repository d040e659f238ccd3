"""Steps 5.1 – 5.4 against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError, StepResult
from steps.step5_ets_cut import ets_cut_jobs, merge_ets_raw, run_add_shield, tidy_ets_cut
from tests.steps import (
    DATE,
    FAST,
    ROUND,
    RUNS,
    assert_only_stuck_incomplete,
    commands,
    open_remote,
    pdf_pages,
    sha256,
)

WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}
NOISE = 85421  # the run of DATE whose ETS search finds noise windows (shield file)
KW = {"date": DATE, "round": ROUND}


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST, noise_runs=[NOISE])
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST, noise_runs=[NOISE])
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")
    yield from open_remote(local_settings, tmp_path / "downloads")


def _dir(sim: Any) -> Path:
    return sim.stage_dir("ETS_cut")


def _stage5(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).startswith("plot_ETS_")]


def _run_5_1(site: RemoteSite, run_key: str = "rk5", **kw: Any) -> StepResult:
    return ets_cut_jobs(site, **KW, run_key=run_key, **{**WAIT, **kw})


# --------------------------------------------------------------------------- 5.1


def test_ets_cut_jobs_wait_for_both_plots_of_every_run(site: RemoteSite, sim: Any) -> None:
    d = _dir(sim)
    (d / "run85001_cut.png").write_text("stale plot of an earlier date")
    result = _run_5_1(site)
    assert result.outcome == Outcome.SUCCESS and result.runs_complete == RUNS
    assert not (d / "run85001_cut.png").exists()  # legacy cleanup `rm -f plot* run*`
    names = {Path(r.path).name for r in result.files}
    for r in RUNS:
        assert {f"run{r}_cut.png", f"run{r}_total.png"} <= names
    assert f"shield{NOISE}.txt" in names and result.data["shield_runs"] == [NOISE]
    for rec in result.files:
        assert rec.sha256 == sha256(Path(rec.path))
    assert sorted(s["jobfile"] for s in _stage5(sim)) == [f"plot_ETS_{r}.txt" for r in RUNS]
    again = _run_5_1(site)
    assert again.runs_complete == RUNS and len(_stage5(sim)) == len(RUNS)


def test_crashed_job_is_5107_then_only_it_is_resubmitted(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(fail={"5": [85420]})
    with pytest.raises(StepError) as exc:
        _run_5_1(local_site, max_wait_minutes=2)
    res = exc.value.result
    assert res.error.code == 5107 and exc.value.action == "manual"
    assert res.runs_incomplete == [85420] and "85420" in res.data["failed"]
    sim.set_faults(fail={})
    result = _run_5_1(local_site)
    assert result.runs_complete == RUNS
    assert [s["jobfile"] for s in _stage5(sim)][-1] == "plot_ETS_85420.txt"
    assert len(_stage5(sim)) == 4


def test_never_finishing_job_times_out_5104(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"5": [85422]})
    with pytest.raises(StepError) as exc:
        _run_5_1(local_site, max_wait_minutes=0.05)
    assert exc.value.result.error.code == 5104
    assert exc.value.result.data["timed_out"]
    assert_only_stuck_incomplete(exc.value.result, 85422)


def test_empty_plot_is_not_complete(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(empty_output={"5": [85422]})
    with pytest.raises(StepError) as exc:
        _run_5_1(local_site, max_wait_minutes=2)
    assert exc.value.result.runs_incomplete == [85422]
    assert "empty" in exc.value.result.data["failed"]["85422"]


# --------------------------------------------------------------------------- 5.2


def test_add_shield_appends_this_dates_windows_once(site: RemoteSite, sim: Any) -> None:
    _run_5_1(site)
    ets = _dir(sim) / "ets_cut.txt"
    old = ets.read_text().splitlines()
    mine = (_dir(sim) / f"shield{NOISE}.txt").read_text().splitlines()
    result = run_add_shield(site, **KW, run_key="rk5", poll_seconds=0.1)
    assert result.outcome == Outcome.SUCCESS and result.data["appended"] is True
    assert ets.read_text().splitlines() == [*old, *mine]
    assert result.files[0].sha256 == sha256(ets)
    for run_key in ("rk5", "rk5-again"):
        again = run_add_shield(site, **KW, run_key=run_key, poll_seconds=0.1)
        assert again.data["already_present"] is True and again.data["appended"] is False
    assert ets.read_text().splitlines() == [*old, *mine]


def test_add_shield_without_windows_appends_nothing(site: RemoteSite, sim: Any) -> None:
    sim.set_faults(noise_runs=[])
    _run_5_1(site)
    ets = _dir(sim) / "ets_cut.txt"
    before = ets.read_text()
    result = run_add_shield(site, **KW, run_key="rk5", poll_seconds=0.1)
    assert result.outcome == Outcome.SUCCESS and result.data["appended"] is False
    assert result.data["topup_runs"] == [] and result.data["shield_runs"] == []
    assert ets.read_text() == before
    assert tidy_ets_cut(site, **KW, run_key="rk5").outcome == Outcome.SUCCESS


def test_shield_file_under_another_name_is_5202_and_nothing_is_appended(
    site: RemoteSite, sim: Any
) -> None:
    """The job writes shield_run{run}.txt, the site setting says shield{run}.txt."""
    sim.set_faults(ets_shield_name="shield_run{run}.txt")
    _run_5_1(site)
    ets = _dir(sim) / "ets_cut.txt"
    before = ets.read_text()
    with pytest.raises(StepError) as exc:
        run_add_shield(site, **KW, run_key="rk5", poll_seconds=0.1)
    res = exc.value.result
    assert res.error.code == 5202 and res.error.name == "STEP5_2_NO_SHIELD_FILE"
    assert exc.value.action == "manual" and res.outcome == Outcome.FAILED
    assert "'shield{run}.txt'" in res.message and f"shield{NOISE}.txt" in res.message
    assert f"shield_run{NOISE}.txt" in res.message  # the file that was found
    assert res.data["shield_files_found"] == [f"shield_run{NOISE}.txt"]
    assert res.data["topup_runs"] == [NOISE] and res.runs_incomplete == [NOISE]
    assert ets.read_text() == before  # add_shield.sh did not run


def test_shield_run_pattern_setting_finds_the_files(
    sim: Any, ssh_settings: SiteSettings, tmp_path: Path
) -> None:
    sim.set_faults(**FAST, noise_runs=[NOISE], ets_shield_name="shield_run{run}.txt")
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")
    settings = ssh_settings.model_copy(update={"shield_file_pattern": "shield_run{run}.txt"})
    for site in open_remote(settings, tmp_path / "downloads"):
        first = _run_5_1(site)
        assert first.data["shield_runs"] == [NOISE]
        assert f"shield_run{NOISE}.txt" in {Path(r.path).name for r in first.files}
        result = run_add_shield(site, **KW, run_key="rk5", poll_seconds=0.1)
        assert result.data["appended"] is True and result.data["shield_runs"] == [NOISE]
        mine = (_dir(sim) / f"shield_run{NOISE}.txt").read_text().splitlines()
        tidied = tidy_ets_cut(site, **KW, run_key="rk5")
        assert NOISE in tidied.data["runs"]
        assert mine[0] in (_dir(sim) / "ets_cut.txt").read_text().splitlines()


def test_shield_pattern_setting_is_validated() -> None:
    assert SiteSettings(shield_file_pattern="shield_run{run}.txt").shield_file(85420) == (
        "shield_run85420.txt"
    )
    for bad in (
        "ets{run}.txt",
        "shield.txt",
        "shield{run}{run}.txt",
        "shield{run}.dat",
        "shield/{run}.txt",
        "shield {run}.txt",
        "shield{run}.txt;rm -rf ~",
    ):
        with pytest.raises(ValueError, match="shield_file_pattern"):
            SiteSettings(shield_file_pattern=bad)


def test_add_shield_failure_is_a_warning_5200(local_site: RemoteSite, sim: Any) -> None:
    _run_5_1(local_site)
    sim.set_faults(script_exit={"add_shield.sh": 1})
    with pytest.raises(StepError) as exc:
        run_add_shield(local_site, **KW, run_key="rk5", poll_seconds=0.1)
    assert exc.value.result.error.code == 5200 and exc.value.action == "continue"
    assert exc.value.result.outcome == Outcome.WARNING


# --------------------------------------------------------------------------- 5.3

BEFORE = """85390   1200.500   1201.700
85383
85401   12.345   13.000   850.100   851.200
85311   33.000   35.500
85390   1200.500   1201.700
85384
"""
AFTER = """85311   33.000   35.500
85390   1200.500   1201.700
85401   12.345   13.000   850.100   851.200
"""


def test_tidy_is_the_exact_spec_transformation(site: RemoteSite, sim: Any) -> None:
    ets = _dir(sim) / "ets_cut.txt"
    ets.write_text(BEFORE)
    before = commands(site)
    result = tidy_ets_cut(site, **KW, run_key="rk5")
    assert ets.read_text() == AFTER
    assert commands(site) - before <= 3  # ls DATA, the one tidy command, file facts
    assert result.data["lines"] == 3 and result.data["runs"] == [85311, 85390, 85401]
    assert result.files[0].sha256 == sha256(ets)
    tidy_ets_cut(site, **KW, run_key="rk5")  # idempotent
    assert ets.read_text() == AFTER
    assert not (_dir(sim) / "ets_cut_temp.txt").exists()


def test_tidy_of_only_bare_run_numbers_gives_an_empty_file(
    local_site: RemoteSite, sim: Any
) -> None:
    ets = _dir(sim) / "ets_cut.txt"
    ets.write_text("85420\n85421\n")
    result = tidy_ets_cut(local_site, **KW, run_key="rk5")
    assert result.outcome == Outcome.SUCCESS and result.data["lines"] == 0
    assert ets.read_text() == "" and not (_dir(sim) / "ets_cut_temp.txt").exists()


def test_empty_ets_cut_for_topup_data_is_5304(site: RemoteSite, sim: Any) -> None:
    """The ETS search found regions for a run but no fine window: a shield file holding only
    the run number (§6.5), so nothing survives the tidy although the date is topup data."""
    _run_5_1(site)
    (_dir(sim) / f"shield{NOISE}.txt").write_text(f"{NOISE}\n")
    (_dir(sim) / "ets_cut.txt").write_text("")
    run_add_shield(site, **KW, run_key="rk5", poll_seconds=0.1)
    assert (_dir(sim) / "ets_cut.txt").read_text() == f"{NOISE}\n"
    with pytest.raises(StepError) as exc:
        tidy_ets_cut(site, **KW, run_key="rk5")
    res = exc.value.result
    assert res.error.code == 5304 and exc.value.action == "manual"
    assert res.data["topup_runs"] == [NOISE] and res.data["lines"] == 0
    assert f"shield{NOISE}.txt" in res.message and "empty" in res.message


def test_tidy_without_the_file_fails_5300(local_site: RemoteSite, sim: Any) -> None:
    (_dir(sim) / "ets_cut.txt").unlink()
    with pytest.raises(StepError) as exc:
        tidy_ets_cut(local_site, **KW, run_key="rk5")
    assert exc.value.result.error.code == 5300 and "does not exist" in exc.value.result.message
    assert not (_dir(sim) / "ets_cut.txt").exists()


# --------------------------------------------------------------------------- 5.4


def test_raw_pdf_holds_both_plots_of_this_dates_runs(site: RemoteSite, sim: Any) -> None:
    _run_5_1(site)
    d = _dir(sim)
    (d / "run85001_cut.png").write_bytes((d / "run85420_cut.png").read_bytes())  # other date
    result = merge_ets_raw(site, **KW, run_key="rk5")
    assert result.outcome == Outcome.SUCCESS
    (dl,) = [r for r in result.files if r.role == "download"]
    local = Path(dl.local_path)
    assert local.name == f"mergedd_ETS_raw_{DATE}.pdf"
    assert local.parent == Path(site.settings.downloads_dir) / "rk5"
    assert pdf_pages(local) == 2 * len(RUNS)
    assert sha256(local) == dl.sha256 == sha256(d / "mergedd_ETS_raw.pdf")
    verified = [Path(r.path).name for r in result.files if r.role == "verified"]
    assert verified == [n for r in RUNS for n in (f"run{r}_cut.png", f"run{r}_total.png")]


def test_raw_pdf_with_a_missing_plot_fails_5401(local_site: RemoteSite, sim: Any) -> None:
    _run_5_1(local_site)
    (_dir(sim) / "run85422_total.png").unlink()
    with pytest.raises(StepError) as exc:
        merge_ets_raw(local_site, **KW, run_key="rk5")
    res = exc.value.result
    assert res.error.code == 5401 and exc.value.action == "retry"
    assert res.data["missing_pngs"] == ["run85422_total.png"]
