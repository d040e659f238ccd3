"""Steps 1.1 – 1.4 against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.remote.errors import RemoteError
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue
from steps.reports import merge_pngs
from steps.results import Outcome, StepError, StepResult
from steps.step1_first_jobs import first_jobs, ist_check, ist_pdf, move_outputs
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
    wait_until,
)

WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    yield from open_remote(local_settings, tmp_path / "downloads")


def _inj(site: RemoteSite) -> Path:
    return Path(site.paths(ROUND).inj)


def _stage1(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).endswith("_1.txt")]


def _run_1_1(site: RemoteSite, run_key: str = "rk1", **kw: Any) -> StepResult:
    return first_jobs(site, date=DATE, round=ROUND, run_key=run_key, **{**WAIT, **kw})


# --------------------------------------------------------------------------- 1.1


def test_first_jobs_submit_once_wait_and_record(site: RemoteSite, sim: Any) -> None:
    result = _run_1_1(site)
    assert result.outcome == Outcome.SUCCESS
    assert result.runs_complete == RUNS and result.runs_incomplete == []
    subs = _stage1(sim)
    assert sorted(Path(s["jobfile"]).name for s in subs) == [f"rec{r}_1.txt" for r in RUNS]
    # six files per run, facts computed on the remote equal the real files
    assert len(result.files) == 6 * len(RUNS)
    for rec in result.files:
        assert rec.sha256 == sha256(Path(rec.path)) and rec.size == Path(rec.path).stat().st_size
        assert rec.run in RUNS and rec.role == "output"
    types = {Path(r.path).suffix: r.content_type for r in result.files}
    assert types[".png"] == "image/png" and types[".root"] == "application/root"
    assert types[".bosslog"] == "text/plain"
    # cluster ids recorded for cancellation
    jobs_file = Path(site.settings.control_dir) / "rk1.jobs"
    assert sorted(int(x) for x in jobs_file.read_text().split()) == sorted(
        int(s["cluster"]) for s in subs
    )
    # a retry of the same flow run re-attaches: nothing is submitted again, no cleanup
    again = _run_1_1(site)
    assert again.runs_complete == RUNS
    assert len(_stage1(sim)) == len(RUNS)
    assert len(jobs_file.read_text().split()) == len(RUNS)


def test_dropped_connection_during_genjob_reattaches_without_resubmitting(
    site: RemoteSite, sim: Any, sim_ssh: SshPair
) -> None:
    sim.set_faults(slow={"genJob.sh": 1.5})
    ctl = Path(site.settings.control_dir)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(_run_1_1(site))
        except Exception as exc:  # inspected below
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: (ctl / "rk1.1_1.genjob" / "pid").exists())
    assert sim_ssh.kill_sessions("login") >= 1
    worker.join(60)
    assert not worker.is_alive()
    result = outcome[0]
    if isinstance(result, Exception):  # the drop hit a command in flight: the flow retries
        assert isinstance(result, RemoteError), result
        result = _run_1_1(site)
    assert result.runs_complete == RUNS
    assert site.transport.stats.sessions >= 2
    assert len(_stage1(sim)) == len(RUNS)  # genJob ran once, across the drop
    assert sorted(p.name for p in ctl.iterdir() if p.name.startswith("rk1.1_1.genjob")) == [
        "rk1.1_1.genjob"
    ]


def test_anomaly_file_is_manual_1112(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(interval_run0=[DATE])
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site)
    res = exc.value.result
    assert res.error.code == 1112 and exc.value.action == "manual"
    assert res.data["anomaly_file"] == "Interval_run0.png"
    assert res.data["requires_manual_intervention"] is True


def test_failed_job_stops_the_wait_and_only_it_is_resubmitted(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(fail={"1": [85421]})
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site, max_wait_minutes=2)
    assert time.monotonic() - start < 30  # did not wait for the limit
    res = exc.value.result
    # a crash is not a timeout: its own code, for an operator, with the failing log lines
    assert res.error.code == 1114 and res.error.name == "STEP1_1_JOBS_CRASHED"
    assert exc.value.action == "manual"
    assert res.runs_incomplete == [85421] and res.runs_complete == [85420, 85422]
    assert "85421" in res.data["failed"]
    assert res.data["evidence"]["85421"][0].startswith("rec85421_1.txt.bosserr: ")
    assert "segmentation violation" in res.data["evidence"]["85421"][0]
    assert len(_stage1(sim)) == 3

    # the operator's retry: only the crashed job is resubmitted
    sim.set_faults(fail={})
    result = _run_1_1(local_site)
    assert result.runs_complete == RUNS
    subs = _stage1(sim)
    assert len(subs) == 4 and Path(subs[-1]["jobfile"]).name == "rec85421_1.txt"
    assert [x["run"] for x in result.data["resubmitted"]] == [85421]


def test_empty_output_is_not_complete(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(empty_output={"1": [85420]})
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site, max_wait_minutes=2)
    assert exc.value.result.error.code == 1114 and exc.value.action == "manual"
    assert exc.value.result.runs_incomplete == [85420]
    assert "without output" in exc.value.result.data["failed"]["85420"]


def test_timeout_reports_missing_runs(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"1": [85422]})
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site, max_wait_minutes=0.05)
    assert time.monotonic() - start < 20
    res = exc.value.result
    assert res.error.code == 1111 and res.data["timed_out"] is True
    assert_only_stuck_incomplete(res, 85422)
    assert "Interval_run85422.txt" in res.data["missing"]["85422"]


def test_genjob_failure_then_retry_starts_a_new_attempt(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(script_exit={"genJob.sh": 1})
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site)
    assert exc.value.result.error.code == 1105 and exc.value.action == "retry"
    assert _stage1(sim) == []
    sim.set_faults(script_exit={})
    result = _run_1_1(local_site)
    assert result.data["genjob_attempt"] == 2
    assert len(_stage1(sim)) == 3


def test_submit_job_false_without_jobs_fails_1109(local_site: RemoteSite) -> None:
    with pytest.raises(StepError) as exc:
        _run_1_1(local_site, submit_job=False)
    assert exc.value.result.error.code == 1109


@pytest.mark.parametrize(
    ("date", "round", "code"),
    [
        ("250626; touch /tmp/pwned-step1", ROUND, 22),
        ("$(touch /tmp/pwned-step1)", ROUND, 22),
        ("", ROUND, 22),
        (DATE, "round18 && touch /tmp/pwned-step1", 20),
        ("250627", ROUND, 70),  # a date directory without raw files
        ("259999", ROUND, 70),  # no such date
    ],
)
def test_inputs_are_validated_before_anything_changes(
    local_site: RemoteSite, sim: Any, date: str, round: str, code: int
) -> None:
    inj_before = sorted(p.name for p in _inj(local_site).iterdir())
    before = commands(local_site)
    with pytest.raises(StepError) as exc:
        first_jobs(local_site, date=date, round=round, run_key="rk1", **WAIT)
    assert exc.value.result.error.code == code
    assert exc.value.action == "manual"
    assert commands(local_site) - before <= 1  # at most the one `ls` of DATA/{date}
    assert sim.submissions() == []
    assert sorted(p.name for p in _inj(local_site).iterdir()) == inj_before
    assert not Path("/tmp/pwned-step1").exists()


# --------------------------------------------------------------------------- 1.2


def test_move_outputs_is_idempotent_and_completes_a_partial_move(
    local_site: RemoteSite,
) -> None:
    _run_1_1(local_site)
    inj = _inj(local_site)
    first = move_outputs(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert len(first.data["moved"]) == 2 * len(RUNS)
    for r in RUNS:
        assert (inj / "calibConst" / f"InjSigTime_00{r}_720.root").is_file()
        assert (inj / "Interval_plot" / f"Interval_run{r}.png").is_file()
        assert not (inj / DATE / f"Interval_run{r}.png").exists()
        assert (inj / DATE / f"Interval_run{r}.txt").is_file()  # stays for 1.3
    # the legacy key: the ``ls -la`` of INJ/<date> after the move
    remaining = first.data["remaining_files"]
    assert remaining.startswith("total ") and all(
        f"Interval_run{r}.txt" in remaining and f"Interval_run{r}.png" not in remaining
        for r in RUNS
    )
    assert {r.role for r in first.files} == {"output"} and len(first.files) == 2 * len(RUNS)
    for rec in first.files:
        assert rec.sha256 == sha256(Path(rec.path))

    again = move_outputs(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert again.data["moved"] == [] and len(again.data["already_in_place"]) == 6

    # a partial move (one plot back in the date directory) is completed
    (inj / "Interval_plot" / "Interval_run85421.png").rename(inj / DATE / "Interval_run85421.png")
    third = move_outputs(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert third.data["moved"] == ["Interval_run85421.png"]
    assert (inj / "Interval_plot" / "Interval_run85421.png").is_file()


def test_move_outputs_without_outputs_fails_1200(local_site: RemoteSite) -> None:
    (_inj(local_site) / DATE).mkdir()
    with pytest.raises(StepError) as exc:
        move_outputs(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert exc.value.result.error.code == 1200
    assert exc.value.result.runs_incomplete == RUNS


# --------------------------------------------------------------------------- 1.3


def _interval_lines(site: RemoteSite, run: int) -> list[str]:
    text = (_inj(site) / "interval.txt").read_text()
    return [ln for ln in text.splitlines() if ln.split() and ln.split()[0] == str(run)]


def test_ist_check_appends_missing_lines_once(site: RemoteSite) -> None:
    _run_1_1(site)
    interval = _inj(site) / "interval.txt"
    old = interval.read_text()
    result = ist_check(site, date=DATE, round=ROUND, run_key="rk1")
    assert result.data["appended_runs"] == RUNS
    for r in RUNS:
        assert result.data["ist"][str(r)] == {
            "interval_From_DB": 15000000,
            "interval_before_sorting": 15000000,
            "interval_after_sorting": 15000000,
        }
    new = interval.read_text()
    assert new.startswith(old)
    assert new[len(old) :].split("\n")[-len(RUNS) - 1 :] == [f"{r} 15000000" for r in RUNS] + [""]
    again = ist_check(site, date=DATE, round=ROUND, run_key="rk1")
    assert again.data["appended_runs"] == [] and again.data["already_present_runs"] == RUNS
    assert interval.read_text() == new
    roles = {(Path(r.path).name, r.role) for r in again.files}
    assert ("interval.txt", "output") in roles and ("Interval_run85420.txt", "verified") in roles


def test_invalid_ist_is_manual_1302_and_appends_nothing(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(ist={"85421": 6000000})
    _run_1_1(local_site)
    before = (_inj(local_site) / "interval.txt").read_text()
    with pytest.raises(StepError) as exc:
        ist_check(local_site, date=DATE, round=ROUND, run_key="rk1")
    res = exc.value.result
    assert res.error.code == 1302 and exc.value.action == "manual"
    assert res.data["invalid_runs"] == [85421]
    assert res.data["ist"]["85421"]["interval_From_DB"] == 6000000
    assert (_inj(local_site) / "interval.txt").read_text() == before
    # the operator may switch the check off: then the runs are registered
    ok = ist_check(local_site, date=DATE, round=ROUND, run_key="rk1", check_ist=False)
    assert ok.data["appended_runs"] == RUNS
    assert _interval_lines(local_site, 85421) == ["85421 15000000"]


def test_missing_interval_file_fails_1301(local_site: RemoteSite) -> None:
    _run_1_1(local_site)
    (_inj(local_site) / DATE / "Interval_run85422.txt").unlink()
    with pytest.raises(StepError) as exc:
        ist_check(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert exc.value.result.error.code == 1301
    assert exc.value.result.runs_incomplete == [85422]


# --------------------------------------------------------------------------- 1.4


def _ready_for_pdf(site: RemoteSite) -> Path:
    _run_1_1(site)
    move_outputs(site, date=DATE, round=ROUND, run_key="rk1")
    plots = _inj(site) / "Interval_plot"
    # a plot of another date's run: must NOT go into this date's PDF
    (plots / "Interval_run85001.png").write_bytes((plots / "Interval_run85420.png").read_bytes())
    return plots


def test_ist_pdf_holds_only_this_dates_plots_and_is_verified(site: RemoteSite) -> None:
    plots = _ready_for_pdf(site)
    result = ist_pdf(site, date=DATE, round=ROUND, run_key="rk1")
    remote_pdf = plots / "mergedd_IST.pdf"
    assert pdf_pages(remote_pdf) == len(RUNS)
    local = Path(result.data["pdf_local_path"])
    assert local == Path(site.settings.downloads_dir) / "rk1" / f"mergedd_IST_{DATE}.pdf"
    assert sha256(local) == sha256(remote_pdf)
    by_role = {r.role: r for r in result.files}
    assert by_role["pdf"].sha256 == by_role["download"].sha256 == sha256(local)
    assert by_role["download"].local_path == str(local)
    assert by_role["pdf"].content_type == "application/pdf"
    assert sorted(r.run for r in result.files if r.role == "verified") == RUNS


def test_ist_pdf_merge_failure_is_1401_retry(local_site: RemoteSite, sim: Any) -> None:
    _ready_for_pdf(local_site)
    sim.set_faults(container_exit=1)
    with pytest.raises(StepError) as exc:
        ist_pdf(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert exc.value.result.error.code == 1401 and exc.value.action == "retry"


def test_ist_pdf_missing_plot_is_1401(local_site: RemoteSite) -> None:
    plots = _ready_for_pdf(local_site)
    (plots / "Interval_run85422.png").unlink()
    with pytest.raises(StepError) as exc:
        ist_pdf(local_site, date=DATE, round=ROUND, run_key="rk1")
    assert exc.value.result.error.code == 1401
    assert exc.value.result.data["missing_pngs"] == ["Interval_run85422.png"]


def test_ist_pdf_download_cut_once_is_retried(site: RemoteSite, sim_ssh: SshPair) -> None:
    """A transient SFTP fault is absorbed by the SSH layer: the step succeeds."""
    _ready_for_pdf(site)
    sim_ssh.cut_sftp(300, 1)  # the SFTP channel dies early in the next download
    result = ist_pdf(site, date=DATE, round=ROUND, run_key="rk1")
    assert sim_ssh.sftp_cuts_left() == 0 and site.transport.stats.retries == 1
    local = Path(result.data["pdf_local_path"])
    assert sha256(local) == sha256(_inj(site) / "Interval_plot" / "mergedd_IST.pdf")


def test_ist_pdf_download_failure_needs_an_operator_1402(
    site: RemoteSite, sim_ssh: SshPair
) -> None:
    """A required report that cannot be downloaded fails the step for an operator (manual)."""
    _ready_for_pdf(site)
    site.settings.ssh_retry_seconds = 0.5  # the transport reads its budget per call
    sim_ssh.set_sftp_fail(True)
    try:
        with pytest.raises(StepError) as exc:
            ist_pdf(site, date=DATE, round=ROUND, run_key="rk1")
    finally:
        sim_ssh.set_sftp_fail(False)
    res = exc.value.result
    assert res.error.code == 1402 and exc.value.action == "manual"
    assert res.outcome == Outcome.FAILED
    assert "gave up after 2 attempts" in res.data["download_error"]
    assert [r.role for r in res.files if r.role == "pdf"] == ["pdf"]
    assert not (Path(site.settings.downloads_dir) / "rk1" / f"mergedd_IST_{DATE}.pdf").exists()


def test_merge_file_list_is_validated(local_site: RemoteSite) -> None:
    plots = str(_inj(local_site) / "Interval_plot")
    before = commands(local_site)
    for bad in ("*.png", "a.png; touch /tmp/pwned-merge", "../x.png", "$(id).png"):
        with pytest.raises(InvalidValue):
            merge_pngs(local_site, plots, [bad], "out.pdf")
    with pytest.raises(InvalidValue):
        merge_pngs(local_site, plots, ["a.png"], "../out.pdf")
    with pytest.raises(ValueError):
        merge_pngs(local_site, plots, [], "out.pdf")
    assert commands(local_site) == before
    assert not Path("/tmp/pwned-merge").exists()
