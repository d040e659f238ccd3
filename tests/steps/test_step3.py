"""Steps 3.1 – 3.2 against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError, StepResult
from steps.step3_search_peak import run_add_script, search_peak_jobs
from tests.steps import (
    DATE,
    FAST,
    ROUND,
    RUNS,
    assert_only_stuck_incomplete,
    commands,
    open_remote,
    sha256,
)

WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}
NOISE = 85421  # the run of DATE whose search finds windows (fault noise_runs)


def put_hists(sim: Any, runs: list[int] = RUNS, empty: tuple[int, ...] = ()) -> None:
    """What step 2 leaves for this date: ``HIST/hist{run}.root`` (empty ones on request)."""
    for r in runs:
        (sim.hist() / f"hist{r}.root").write_text("" if r in empty else f"root hist {r}\n")


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST, noise_runs=[NOISE])
    put_hists(sim)
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST, noise_runs=[NOISE])
    put_hists(sim)
    yield from open_remote(local_settings, tmp_path / "downloads")


def _dir(sim: Any) -> Path:
    return sim.stage_dir("search_peak")


def _stage3(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).endswith("_3.txt")]


def _run_3_1(site: RemoteSite, run_key: str = "rk3", **kw: Any) -> StepResult:
    return search_peak_jobs(site, date=DATE, round=ROUND, run_key=run_key, **{**WAIT, **kw})


def _run_3_2(site: RemoteSite, run_key: str = "rk3") -> StepResult:
    return run_add_script(site, date=DATE, round=ROUND, run_key=run_key, poll_seconds=0.1)


# --------------------------------------------------------------------------- 3.1


def test_search_peak_submits_once_waits_and_records(site: RemoteSite, sim: Any) -> None:
    d = _dir(sim)
    (d / "shield_run99999.txt").write_text("99999\n")  # left by an earlier date
    result = _run_3_1(site)
    assert result.outcome == Outcome.SUCCESS and result.error is None
    assert result.runs_complete == RUNS and result.runs_incomplete == []
    assert not (d / "shield_run99999.txt").exists()  # first submission: legacy cleanup ran
    subs = _stage3(sim)
    assert sorted(s["jobfile"] for s in subs) == [f"run_{r}_3.txt" for r in RUNS]
    assert all(s["kind"] == "hep_sub" for s in subs)
    # every shield file recorded with the remote's facts; the noise run's canvas too
    names = {Path(r.path).name: r for r in result.files}
    assert set(names) == {f"shield_run{r}.txt" for r in RUNS} | {f"run{NOISE}.root"}
    for rec in result.files:
        assert rec.sha256 == sha256(Path(rec.path)) and rec.size == Path(rec.path).stat().st_size
        assert rec.role == "output" and rec.run in RUNS
    assert names[f"shield_run{NOISE}.txt"].content_type == "text/plain"
    assert (d / f"shield_run{NOISE}.txt").read_text().startswith(f"{NOISE}     ")
    # cluster ids kept for cancellation
    jobs = Path(site.settings.control_dir) / "rk3.jobs"
    assert sorted(int(x) for x in jobs.read_text().split()) == sorted(s["cluster"] for s in subs)

    # a retry of the same flow run re-attaches: no cleanup, nothing submitted again
    (d / "run_marker.txt").write_text("must survive\n")
    again = _run_3_1(site)
    assert again.runs_complete == RUNS
    assert len(_stage3(sim)) == len(RUNS)
    assert (d / "run_marker.txt").exists()


def test_empty_shield_file_is_not_complete(local_site: RemoteSite, sim: Any) -> None:
    # An empty hist file: the C++ creates its shield file, then fails on the input (§13.10).
    put_hists(sim, empty=(85420,))
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site, max_wait_minutes=2)
    assert time.monotonic() - start < 30  # the job ended: no waiting for the limit
    res = exc.value.result
    # the job ended (batch system) with an empty output: a crash, for an operator at once
    assert res.error.code == 3107 and exc.value.action == "manual"
    assert res.error.name == "STEP3_1_JOBS_CRASHED"
    assert res.runs_incomplete == [85420] and res.runs_complete == [85421, 85422]
    assert (_dir(sim) / "shield_run85420.txt").stat().st_size == 0
    assert "without output" in res.data["failed"]["85420"]
    # the evidence: the job's own words, from its log
    assert any("can not access the file" in x for x in res.data["evidence"]["85420"])
    assert "can not access the file" in res.message


def test_never_finishing_job_times_out_3105_listing_it(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"3": [85422]})
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site, max_wait_minutes=0.05)
    assert time.monotonic() - start < 20
    res = exc.value.result
    assert res.error.code == 3105 and res.error.name == "STEP3_1_FILE_CHECK_TIMEOUT"
    assert_only_stuck_incomplete(res, 85422)
    assert res.data["timed_out"] is True
    assert res.data["missing"]["85422"] == ["shield_run85422.txt", "run_85422_3.txt.out.*"]
    assert "85422" in res.message


def test_failed_job_is_reported_then_only_it_is_resubmitted(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(fail={"3": [85421]})
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site, max_wait_minutes=2)
    res = exc.value.result
    assert res.error.code == 3107 and res.runs_incomplete == [85421]
    assert exc.value.action == "manual"  # a crash: no automatic retry
    assert "Break" in res.data["failed"]["85421"] and res.data["timed_out"] is False
    assert any("segmentation violation" in x for x in res.data["evidence"]["85421"])
    assert len(_stage3(sim)) == 3

    # the operator fixed the cause and chose retry: only the crashed job is resubmitted
    sim.set_faults(fail={})
    result = _run_3_1(local_site)
    assert result.runs_complete == RUNS
    subs = _stage3(sim)
    assert len(subs) == 4 and subs[-1]["jobfile"] == "run_85421_3.txt"
    assert [x["run"] for x in result.data["resubmitted"]] == [85421]
    # the failed attempt's logs were removed before the resubmission
    d = _dir(sim)
    assert len(list(d.glob("run_85421_3.txt.err.*"))) == 1
    assert "Break" not in next(d.glob("run_85421_3.txt.err.*")).read_text()


def test_genjob_failure_is_3100_and_a_retry_starts_a_new_attempt(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(script_exit={"genJob.sh": 3})
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site)
    assert exc.value.result.error.code == 3100 and exc.value.action == "retry"
    assert _stage3(sim) == []
    sim.set_faults(script_exit={})
    result = _run_3_1(local_site)
    assert result.data["genjob_attempt"] == 2 and result.data["genjob_key"] == "rk3.3_1.genjob-2"
    assert len(_stage3(sim)) == 3


def test_check_only_without_job_files_is_manual_3103(local_site: RemoteSite, sim: Any) -> None:
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site, submit_job=False)
    assert exc.value.result.error.code == 3103 and exc.value.action == "manual"
    assert exc.value.result.runs_incomplete == RUNS
    assert sim.submissions() == []


@pytest.mark.parametrize(
    ("date", "round", "code"),
    [
        ("250626; touch /tmp/pwned-step3", ROUND, 22),
        ("$(touch /tmp/pwned-step3)", ROUND, 22),
        (DATE, "round18`touch /tmp/pwned-step3`", 20),
        ("250699", ROUND, 70),
    ],
)
def test_inputs_are_validated_before_anything_changes(
    local_site: RemoteSite, sim: Any, date: str, round: str, code: int
) -> None:
    before_files = sorted(p.name for p in _dir(sim).iterdir())
    before = commands(local_site)
    with pytest.raises(StepError) as exc:
        search_peak_jobs(local_site, date=date, round=round, run_key="rk3", **WAIT)
    assert exc.value.result.error.code == code and exc.value.action == "manual"
    assert commands(local_site) - before <= 1  # at most the `ls` of DATA/{date}
    assert sim.submissions() == []
    assert sorted(p.name for p in _dir(sim).iterdir()) == before_files
    assert not Path("/tmp/pwned-step3").exists()


# --------------------------------------------------------------------------- 3.2


def test_add_script_appends_once_and_cleans_window_dat(site: RemoteSite, sim: Any) -> None:
    _run_3_1(site)
    window = _dir(sim) / "window.dat"
    old = window.read_text().splitlines()
    mine = (_dir(sim) / f"shield_run{NOISE}.txt").read_text().splitlines()[0]
    result = _run_3_2(site)
    assert result.outcome == Outcome.SUCCESS
    lines = window.read_text().splitlines()
    # the earlier window line stays first; this date's window line appended once; the bare
    # run-number lines of the non-topup runs are gone (exact legacy sed)
    assert lines == [*old, mine]
    assert result.data["already_present"] is False and result.data["add_started"] is True
    # the windows parsed where the step read them (the physics summary uses these numbers)
    values = [float(v) for v in mine.split()[1:]]
    pairs = [list(p) for p in zip(values[::2], values[1::2], strict=True)]
    assert result.data["windows"] == {str(NOISE): pairs}
    (rec,) = result.files
    assert Path(rec.path) == window and rec.sha256 == sha256(window)

    # the same flow run again, and a new flow run of the same date: nothing appended
    for run_key in ("rk3", "rk3-other"):
        again = _run_3_2(site, run_key)
        assert again.data["already_present"] is True
        assert window.read_text().splitlines() == [*old, mine]
    assert not (Path(site.settings.control_dir) / "rk3-other.3_2.add").exists()


def test_add_script_keeps_one_copy_when_part_was_appended_before(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(noise_runs=[85420, NOISE])
    _run_3_1(local_site)
    d = _dir(sim)
    first = (d / "shield_run85420.txt").read_text()
    second = (d / f"shield_run{NOISE}.txt").read_text()
    with (d / "window.dat").open("a") as fh:  # an earlier, interrupted append
        fh.write(first)
    _run_3_2(local_site)
    lines = (d / "window.dat").read_text().splitlines()
    assert lines.count(first.strip("\n")) == 1 and lines.count(second.strip("\n")) == 1
    assert not any(ln.isdigit() for ln in lines)


def test_add_script_failure_is_a_warning_3200(local_site: RemoteSite, sim: Any) -> None:
    _run_3_1(local_site)
    sim.set_faults(script_exit={"add.sh": 1})
    before = (_dir(sim) / "window.dat").read_text()
    with pytest.raises(StepError) as exc:
        _run_3_2(local_site)
    res = exc.value.result
    assert res.error.code == 3200 and exc.value.action == "continue"
    assert res.outcome == Outcome.WARNING
    assert (_dir(sim) / "window.dat").read_text() == before


def test_add_script_without_shield_files_is_a_warning_3200(local_site: RemoteSite) -> None:
    with pytest.raises(StepError) as exc:
        _run_3_2(local_site)
    assert exc.value.result.error.code == 3200
    assert exc.value.result.outcome == Outcome.WARNING
    assert exc.value.result.runs_incomplete == RUNS
