"""Batch waits that classify before retrying, and read the batch system's own job states.

Issue 11 part 3 and issue 13 part 3, on the real sshd pair (``site``) where it matters:

- a crash (error line in the error log, empty outputs), a held job and a run without a job
  file (a 6-digit run cut to 5 digits by the site's unchanged script) end at an operator
  decision (``manual``) at once, with the evidence;
- a job still running is never resubmitted nor its files deleted: the timeout is the only
  retried failure, and a retry re-attaches;
- logs written when a job starts (``logs_at_start``) and array jobs (``array_jobs``) do
  not mislead the waits, because ``hep_q`` is asked in the same poll command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import users
from sim.layout import DateSpec, default_layout
from steps.config import SiteSettings
from steps.job_states import apply_job_states, run_failures
from steps.remote.polling import BatchJob, BatchQuery, PollReport
from steps.remote.site import RemoteSite
from steps.results import StepError, StepResult
from steps.step1_first_jobs import first_jobs
from steps.step2_second_jobs import second_jobs
from steps.step3_search_peak import search_peak_jobs
from tests.conftest import SIM_USER
from tests.steps import DATE, FAST, ROUND, RUNS, open_remote

WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}
JOBS_PER_RUN = 5


def put_hists(sim: Any) -> None:
    """What step 2 leaves for DATE: ``HIST/hist{run}.root``."""
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    put_hists(sim)
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    put_hists(sim)
    yield from open_remote(local_settings, tmp_path / "downloads")


def _stage(sim: Any, suffix: str) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).endswith(suffix)]


def _run_3_1(site: RemoteSite, run_key: str = "rk", **kw: Any) -> StepResult:
    return search_peak_jobs(site, date=DATE, round=ROUND, run_key=run_key, **{**WAIT, **kw})


def _polls(site: RemoteSite) -> list[str]:
    """The poll commands run so far (the transport's history keeps their beginning)."""
    return [c for c in site.transport.stats.history if c.startswith("# topup: poll of ")]


# --------------------------------------------------------------------------- crashes


def test_crash_with_an_error_line_goes_to_an_operator_at_once(
    site: RemoteSite, sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The crash line matches none of the legacy failure patterns: only the batch system's
    # word (the job has left the queue) and the empty outputs tell that it crashed.
    sim.set_faults(crash={"1": [85421]}, crash_line="Error: cannot allocate 4096 MB")
    caplog.set_level(logging.WARNING, logger="topup.steps")
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        first_jobs(site, date=DATE, round=ROUND, run_key="rk", max_wait_minutes=2, poll_seconds=1)
    lost = time.monotonic() - start
    res = exc.value.result
    assert res.error.code == 1114 and res.error.name == "STEP1_1_JOBS_CRASHED"
    assert exc.value.action == "manual"  # the policy pauses for an operator: no retries
    assert lost < 60  # long before the 2-minute limit
    assert res.runs_incomplete == [85421] and res.runs_complete == [85420, 85422]
    assert res.data["timed_out"] is False and res.data["job_states"]["85421"] == "ended"
    assert res.data["failed"]["85421"].startswith("job ended without output")
    assert "Interval_run85421.txt (empty)" in res.data["failed"]["85421"]
    # the evidence: the failing line of its .bosserr, in the data and in the message
    assert res.data["evidence"]["85421"] == [
        "rec85421_1.txt.bosserr: Error: cannot allocate 4096 MB",
        *res.data["evidence"]["85421"][1:],
    ]
    assert "rec85421_1.txt.bosserr: Error: cannot allocate 4096 MB" in res.message
    # the log says it too, at WARNING, with the code's name (one message; a handler may
    # record it twice)
    (line,) = {
        r.getMessage()
        for r in caplog.records
        if "STEP1_1_JOBS_CRASHED" in r.getMessage() and r.levelname == "WARNING"
    }
    assert line.startswith("step 1.1: [1114 STEP1_1_JOBS_CRASHED] 1/3 runs crashed: [85421]")
    assert "Error: cannot allocate 4096 MB" in line
    # every poll asked the batch system first, in the same command as the files
    assert _polls(site) and all("printf 'BATCH" in c for c in _polls(site))


def test_held_job_is_for_an_operator_and_not_touched(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(held={"3": [85421]})
    with pytest.raises(StepError) as exc:
        _run_3_1(local_site, max_wait_minutes=2)
    res = exc.value.result
    assert res.error.code == 110 and res.error.name == "BATCH_JOB_HELD"
    assert exc.value.action == "manual"
    assert res.runs_incomplete == [85421] and res.data["held"] == [85421]
    assert "held by the batch system" in res.message
    # still held in the queue: not removed, not resubmitted
    (held,) = [j for j in sim.active_jobs() if j.get("state") == "H"] or [None]
    assert held is not None and held["jobfile"] == "run_85421_3.txt"
    assert len(_stage(sim, "_3.txt")) == len(RUNS)


# --------------------------------------------------------------------------- running jobs


def test_still_running_job_is_retried_by_reattaching_never_resubmitted(
    site: RemoteSite, sim: Any
) -> None:
    # Its logs exist from the start (shared filesystem): files alone would call it ended.
    sim.set_faults(logs_at_start=True, never_finish={"3": [85422]})
    with pytest.raises(StepError) as exc:
        _run_3_1(site, max_wait_minutes=0.1)
    res = exc.value.result
    assert res.error.code == 3105 and exc.value.action == "retry"  # transient: retried
    assert res.runs_incomplete == [85422] and res.data["timed_out"] is True
    assert res.data["still_running"] == [85422] and res.data["failed"] == {}
    d = sim.stage_dir("search_peak")
    (out_log,) = d.glob("run_85422_3.txt.out.*")  # written at the job's start

    # The task retry of the same flow run: re-attaches, resubmits nothing, deletes nothing.
    with pytest.raises(StepError) as again:
        _run_3_1(site, max_wait_minutes=0.02)
    assert again.value.result.error.code == 3105
    assert "resubmitted" not in again.value.result.data
    assert len(_stage(sim, "_3.txt")) == len(RUNS)
    assert out_log.exists()
    assert [j["jobfile"] for j in sim.active_jobs()] == ["run_85422_3.txt"]


def test_logs_at_start_wait_passes(site: RemoteSite, sim: Any) -> None:
    sim.set_faults(logs_at_start=True, job_seconds=1.0)
    result = _run_3_1(site)
    assert result.runs_complete == RUNS and result.runs_incomplete == []
    assert len(_stage(sim, "_3.txt")) == len(RUNS)


def test_logs_at_start_without_the_batch_system_would_fail_early(
    sim: Any, local_settings: SiteSettings, tmp_path: Path
) -> None:
    """The control case: the same site, hep_q unusable → files alone judge, and a log
    present without outputs reads as a crash. This is what the batch state prevents."""
    sim.set_faults(**{**FAST, "job_seconds": 5.0}, logs_at_start=True)
    put_hists(sim)
    broken = local_settings.model_copy(update={"batch_query_cmd": "/nonexistent/hep_q"})
    for s in open_remote(broken, tmp_path / "downloads"):
        with pytest.raises(StepError) as exc:
            _run_3_1(s)
    res = exc.value.result
    assert res.error.code == 3107 and res.data["batch_query_error"].startswith("exit 127")


# --------------------------------------------------------------------------- array jobs


def test_array_jobs_with_logs_at_start_pass_step_2_1(site: RemoteSite, sim: Any) -> None:
    sim.prepare(DATE, ROUND, through="1")
    sim.set_faults(array_jobs=True, logs_at_start=True, job_seconds=0.5)
    result = second_jobs(site, date=DATE, round=ROUND, run_key="rk", **WAIT)
    assert result.runs_complete == RUNS
    subs = [s for s in sim.submissions() if s["kind"] == "boss.condor"]
    # one array (cluster) per run, procs 0..N-1, one job file per proc
    clusters = {s["cluster"] for s in subs}
    assert len(clusters) == len(RUNS) and len(subs) == JOBS_PER_RUN * len(RUNS)
    for c in clusters:
        procs = sorted((s["proc"], s["jobfile"]) for s in subs if s["cluster"] == c)
        run = procs[0][1].split("_")[0].removeprefix("rec")
        assert procs == [(i, f"rec{run}_{i}") for i in range(JOBS_PER_RUN)]


# --------------------------------------------------------------------------- no job file


@pytest.fixture
def six_digit_sim(site_root: Path) -> Iterator[Any]:
    """A site whose date 250628 has 6-digit runs; its scripts are the unchanged ones."""
    from sim.site import build_site

    layout = default_layout()
    layout.round(ROUND).dates.append(DateSpec(date="250628", runs=[123456, 123457]))
    site = build_site(site_root, layout)
    users.chown_tree(site_root, SIM_USER)
    try:
        yield site
    finally:
        site.stop_jobs()


def test_six_digit_runs_without_job_file_go_to_an_operator_at_once(
    six_digit_sim: Any, tmp_path: Path
) -> None:
    six_digit_sim.set_faults(**FAST)
    for s in open_remote(six_digit_sim.settings(), tmp_path / "downloads"):
        with pytest.raises(StepError) as exc:
            first_jobs(s, date="250628", round=ROUND, run_key="rk", **WAIT)
    res = exc.value.result
    assert res.error.code == 1115 and res.error.name == "STEP1_1_RUNS_WITHOUT_JOB_FILE"
    assert exc.value.action == "manual"
    assert res.runs_incomplete == [123456, 123457]
    # the evidence: the job files the site's script made, next to the runs without one
    assert res.data["job_files_found"] == ["rec23456_1.txt", "rec23457_1.txt"]
    assert res.data["run_numbers_cut"] == {"123456": [23456], "123457": [23457]}
    assert "123456 -> 23456" in res.message and "rec23456_1.txt" in res.message


def test_six_digit_runs_in_step_2_1_show_the_directories_made(
    six_digit_sim: Any, tmp_path: Path
) -> None:
    six_digit_sim.set_faults(**FAST)
    six_digit_sim.prepare("250628", ROUND, through="1")
    for s in open_remote(six_digit_sim.settings(), tmp_path / "downloads"):
        with pytest.raises(StepError) as exc:
            second_jobs(s, date="250628", round=ROUND, run_key="rk", **WAIT)
    res = exc.value.result
    assert res.error.code == 2105 and exc.value.action == "manual"
    assert res.data["run_numbers_cut"] == {"123456": [23456], "123457": [23457]}
    assert res.data["job_files_found"] == [
        f"{r}/rec{r}_{i}" for r in (23456, 23457) for i in range(JOBS_PER_RUN)
    ]
    assert "123456 -> 23456" in res.message


# --------------------------------------------------------------------------- the mapping


def _report(lines: list[str], complete: list[str], incomplete: list[str]) -> PollReport:
    jobs = {}
    for line in lines:
        job_id, _, rest = line.strip().partition(" ")
        jobs[job_id] = BatchJob(id=job_id, state=rest.split()[0], line=line)
    return PollReport(
        directory="/d",
        complete=complete,
        incomplete=incomplete,
        batch=BatchQuery(ok=True, clusters=[1, 2, 3], jobs=jobs),
    )


def test_queue_lines_are_mapped_to_runs_by_job_file() -> None:
    files = {"1": ["run_1_3.txt"], "2": ["run_2_3.txt"], "3": ["run_3_3.txt"], "9": ["run_9_3.txt"]}
    report = _report(
        ["1.0 R run_1_3.txt (/d)", "2.0 H run_2_3.txt (/d)", "3.0 R run_9_3.txt (/d)"],
        complete=["1"],
        incomplete=["2", "3"],
    )
    apply_job_states(report, files)
    # run 1's files are there but its job still runs: not complete yet; 9 is not waited for
    assert report.job_states == {"1": "running", "2": "held", "3": "ended"}
    assert report.complete == [] and sorted(report.incomplete) == ["1", "2", "3"]
    assert run_failures(report) == {"3": "job ended without output: ?"}

    # a queued job of ours that names no job file may be any run's: nothing counts as ended
    odd = _report(["1.0 R boss.exe"], complete=[], incomplete=["2", "3"])
    apply_job_states(odd, files)
    assert odd.job_states == {"2": "running", "3": "running"} and run_failures(odd) == {}

    # the query failed: the files alone judge, nothing is changed
    failed = PollReport(directory="/d", complete=["1"], batch=BatchQuery(ok=False, error="x"))
    apply_job_states(failed, files)
    assert failed.job_states == {} and failed.complete == ["1"]
