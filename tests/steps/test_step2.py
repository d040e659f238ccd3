"""Steps 2.1 – 2.5 against the simulated site (real sshd for the main chain)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.job_states import run_failures
from steps.output_waits import poll_tree
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue
from steps.results import Outcome, StepError, StepResult
from steps.step1_first_jobs import first_jobs, ist_check, ist_pdf, move_outputs
from steps.step2_second_jobs import draw_pngs, hist_pdf, merge_hist, second_jobs, wait_check_pngs
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
JOBS_PER_RUN = 5  # one per raw file (5 streams)


def _step1(site: RemoteSite) -> None:
    """Steps 1.1 – 1.3 for DATE: what step 2 needs (calibConst files, interval.txt lines)."""
    first_jobs(site, date=DATE, round=ROUND, run_key="rk", **WAIT)
    move_outputs(site, date=DATE, round=ROUND, run_key="rk")
    ist_check(site, date=DATE, round=ROUND, run_key="rk")


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    for s in open_remote(ssh_settings, tmp_path / "downloads"):
        _step1(s)
        yield s


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    for s in open_remote(local_settings, tmp_path / "downloads"):
        _step1(s)
        yield s


def _stage2(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if not str(s["jobfile"]).endswith(".txt")]


def _base(site: RemoteSite) -> Path:
    return Path(site.paths(ROUND).base)


def _hist(site: RemoteSite) -> Path:
    return Path(site.paths(ROUND).hist)


def _run_2_1(site: RemoteSite, run_key: str = "rk", **kw: Any) -> StepResult:
    return second_jobs(site, date=DATE, round=ROUND, run_key=run_key, **{**WAIT, **kw})


# --------------------------------------------------------------------------- 2.1


def test_second_jobs_wait_for_every_ntuple_and_submit_once(site: RemoteSite, sim: Any) -> None:
    result = _run_2_1(site)
    assert result.runs_complete == RUNS and result.runs_incomplete == []
    assert result.data["jobs"] == JOBS_PER_RUN * len(RUNS)
    assert len(_stage2(sim)) == JOBS_PER_RUN * len(RUNS)
    hist_files = [r for r in result.files if r.path.endswith(".root")]
    assert len(hist_files) == JOBS_PER_RUN * len(RUNS)
    for rec in hist_files:
        assert rec.size > 0 and rec.sha256 == sha256(Path(rec.path))
        assert rec.content_type == "application/root"
    # re-attach on retry: nothing submitted again, and the date dir was not wiped
    mtime = (_base(site) / DATE).stat().st_mtime_ns
    again = _run_2_1(site)
    assert again.runs_complete == RUNS
    assert len(_stage2(sim)) == JOBS_PER_RUN * len(RUNS)
    assert (_base(site) / DATE).stat().st_mtime_ns == mtime


def test_crashed_jobs_fail_2108_and_only_they_are_resubmitted(
    local_site: RemoteSite, sim: Any
) -> None:
    sim.set_faults(fail={"2": [85422]})
    start = time.monotonic()
    with pytest.raises(StepError) as exc:
        _run_2_1(local_site, max_wait_minutes=2)
    assert time.monotonic() - start < 30
    res = exc.value.result
    assert res.error.code == 2108 and exc.value.action == "manual"
    assert res.runs_incomplete == [85422] and res.runs_complete == [85420, 85421]
    assert "segmentation violation" in res.data["evidence"]["85422"][0]
    n = len(_stage2(sim))
    assert n == JOBS_PER_RUN * len(RUNS)

    sim.set_faults(fail={})
    result = _run_2_1(local_site)
    assert result.runs_complete == RUNS
    resub = _stage2(sim)[n:]
    assert sorted(Path(s["jobfile"]).name for s in resub) == [
        f"rec85422_{i}" for i in range(JOBS_PER_RUN)
    ]
    assert {(x["run"], x["job"]) for x in result.data["resubmitted"]} == {
        (85422, i) for i in range(JOBS_PER_RUN)
    }


def test_one_job_still_running_keeps_the_run_incomplete(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"2": [85421]})
    with pytest.raises(StepError) as exc:
        _run_2_1(local_site, max_wait_minutes=0.05)
    res = exc.value.result
    assert res.error.code == 2106 and res.data["timed_out"] is True
    assert_only_stuck_incomplete(res, 85421)


def test_genjob_failure_is_2102(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(script_exit={"genJob.sh": 2})
    with pytest.raises(StepError) as exc:
        _run_2_1(local_site)
    assert exc.value.result.error.code == 2102 and exc.value.action == "retry"


# --------------------------------------------------------------------------- 2.2 – 2.5


def test_chain_merge_draw_wait_pdf(site: RemoteSite, sim: Any) -> None:
    _run_2_1(site)
    hist = _hist(site)
    merged = merge_hist(site, date=DATE, round=ROUND, run_key="rk")
    assert merged.runs_complete == RUNS and merged.data["skipped"] is False
    for r in RUNS:
        assert (hist / f"hist{r}.root").stat().st_size > 0
        assert list((_base(site) / DATE / str(r)).glob(f"hist{r}_*.root")) == []
    assert {Path(f.path).name for f in merged.files} == {f"hist{r}.root" for r in RUNS}
    shas = {f.path: f.sha256 for f in merged.files}

    # retry of the same flow run: re-attached, mergeHist.sh not run again
    again = merge_hist(site, date=DATE, round=ROUND, run_key="rk")
    assert again.data["key"] == merged.data["key"]
    assert {f.path: f.sha256 for f in again.files} == shas
    # another flow run on the merged state: skipped, merged files untouched
    other = merge_hist(site, date=DATE, round=ROUND, run_key="rk-other")
    assert other.data["skipped"] is True
    assert {f.path: f.sha256 for f in other.files} == shas

    # a stale check plot of this date and one of another run
    (hist / "check85420.png").write_bytes(b"stale")
    (hist / "check85001.png").write_bytes(b"other date")
    drawn = draw_pngs(site, date=DATE, round=ROUND, run_key="rk")
    assert drawn.outcome == Outcome.SUCCESS
    waited = wait_check_pngs(site, date=DATE, round=ROUND, run_key="rk", **WAIT)
    assert waited.runs_complete == RUNS
    for rec in waited.files:
        assert rec.role == "verified" and rec.sha256 == sha256(Path(rec.path))
        assert rec.size > len(b"stale")

    pdf = hist_pdf(site, date=DATE, round=ROUND, run_key="rk")
    remote_pdf = hist / "mergedd_Hist.pdf"
    assert pdf_pages(remote_pdf) == len(RUNS)
    local = Path(pdf.data["pdf_local_path"])
    assert local.name == f"mergedd_Hist_{DATE}.pdf" and local.parent.name == "rk"
    assert sha256(local) == sha256(remote_pdf)


def test_merge_hist_refuses_a_mixed_state_72(local_site: RemoteSite) -> None:
    _run_2_1(local_site)
    merge_hist(local_site, date=DATE, round=ROUND, run_key="rk")
    (_hist(local_site) / "hist85421.root").unlink()
    with pytest.raises(StepError) as exc:
        merge_hist(local_site, date=DATE, round=ROUND, run_key="rk-2")
    res = exc.value.result
    assert res.error.code == 72 and exc.value.action == "manual"
    assert res.data["runs_merged"] == [85420, 85422] and res.data["runs_with_parts"] == []


def test_merge_hist_failure_is_2200_and_a_retry_does_not_rerun_blindly(
    local_site: RemoteSite, sim: Any
) -> None:
    _run_2_1(local_site)
    sim.set_faults(script_exit={"hadd": 1})  # every hadd fails: the final mv finds nothing
    with pytest.raises(StepError) as exc:
        merge_hist(local_site, date=DATE, round=ROUND, run_key="rk")
    assert exc.value.result.error.code == 2200 and exc.value.action == "retry"
    # mergeHist.sh deleted the parts anyway (legacy script): a retry must not run it on
    # nothing; it reports the inconsistent state for a person instead
    sim.set_faults(script_exit={})
    with pytest.raises(StepError) as exc2:
        merge_hist(local_site, date=DATE, round=ROUND, run_key="rk")
    assert exc2.value.result.error.code == 72 and exc2.value.action == "manual"


def test_draw_without_merged_files_fails_2300(local_site: RemoteSite) -> None:
    with pytest.raises(StepError) as exc:
        draw_pngs(local_site, date=DATE, round=ROUND, run_key="rk")
    assert exc.value.result.error.code == 2300
    assert exc.value.result.runs_incomplete == RUNS


def test_wait_check_pngs_times_out_2402(local_site: RemoteSite, sim: Any) -> None:
    _run_2_1(local_site)
    merge_hist(local_site, date=DATE, round=ROUND, run_key="rk")
    sim.set_faults(draw_seconds=30)
    draw_pngs(local_site, date=DATE, round=ROUND, run_key="rk")
    with pytest.raises(StepError) as exc:
        wait_check_pngs(
            local_site,
            date=DATE,
            round=ROUND,
            run_key="rk",
            max_wait_minutes=0.01,
            poll_seconds=0.1,
        )
    assert exc.value.result.error.code == 2402
    assert exc.value.result.runs_incomplete == RUNS


def test_wait_check_pngs_without_hist_is_2401(local_site: RemoteSite) -> None:
    with pytest.raises(StepError) as exc:
        wait_check_pngs(local_site, date=DATE, round=ROUND, run_key="rk", **WAIT)
    assert exc.value.result.error.code == 2401 and exc.value.action == "manual"


def test_hist_pdf_merge_failure_2501(local_site: RemoteSite, sim: Any) -> None:
    hist = _hist(local_site)
    for r in RUNS:  # plots present; the container fails
        (hist / f"check{r}.png").write_bytes(b"\x89PNG placeholder")
    sim.set_faults(container_exit=3)
    with pytest.raises(StepError) as exc:
        hist_pdf(local_site, date=DATE, round=ROUND, run_key="rk")
    assert exc.value.result.error.code == 2501 and exc.value.action == "retry"


# --------------------------------------------------------------------------- shared rules


@pytest.fixture
def bare_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    yield from open_remote(local_settings, tmp_path / "downloads")


def test_poll_tree_sees_sub_directories_in_one_command(bare_site: RemoteSite) -> None:
    top = Path(bare_site.paths(ROUND).base) / "polltest"
    (top / "1").mkdir(parents=True)
    (top / "2").mkdir()
    (top / "1" / "a.root").write_bytes(b"x" * 10)
    (top / "1" / "a.bosslog").write_text("ok\n")
    (top / "2" / "b.root").write_bytes(b"")
    (top / "2" / "b.bosserr").write_text("noise\n*** Break *** segmentation violation\n")
    (top / "2" / "b.bosslog").write_text("ended\n")
    before = commands(bare_site)
    report = poll_tree(
        bare_site,
        str(top),
        {"1": ["1/a.root", "1/a.bosslog"], "2": ["2/b.root", "2/b.bosslog"], "3": ["3/c.root"]},
        failure_logs={"1": ["1/a.bosslog"], "2": ["2/b.bosserr", "2/b.bosslog"]},
    )
    assert commands(bare_site) - before == 1
    assert report.complete == ["1"] and report.incomplete == ["2", "3"]
    assert report.present["1"] == {"1/a.root": 10, "1/a.bosslog": 3}
    assert report.empty == {"2": ["2/b.root"]} and report.missing == {"3": ["3/c.root"]}
    assert report.failed == {"2": "*** Break *** segmentation violation"}
    assert run_failures(report, {"2": ["2/b.bosslog"], "3": ["3/c.bosslog"]}) == {
        "2": "*** Break *** segmentation violation"
    }
    with pytest.raises(InvalidValue):
        poll_tree(bare_site, str(top), {"1": ["../etc/passwd"]})
    with pytest.raises(InvalidValue):
        poll_tree(bare_site, str(top), {"1": ["1/$(touch x)"]})


@pytest.fixture(scope="module")
def null_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteSite]:
    """A local site over an empty directory: enough to count commands (there must be none)."""
    root = tmp_path_factory.mktemp("null-site")
    settings = SiteSettings(
        transport="local",
        jump=None,
        topup_root=str(root / "topup"),
        data_root=str(root / "data"),
        control_dir=str(root / "ctl"),
        env_script=str(root / "w720"),
    )
    yield from open_remote(settings, root / "downloads")


STEP_FUNCTIONS = [
    first_jobs,
    move_outputs,
    ist_check,
    ist_pdf,
    second_jobs,
    merge_hist,
    draw_pngs,
    wait_check_pngs,
    hist_pdf,
]


@pytest.mark.parametrize("func", STEP_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("date", "round", "run_key", "code"),
    [
        ("250626;touch /tmp/pwned-step2", ROUND, "rk", 22),
        ("`touch /tmp/pwned-step2`", ROUND, "rk", 22),
        (DATE, "round18\ntouch /tmp/pwned-step2", "rk", 20),
        (DATE, ROUND, "rk; touch /tmp/pwned-step2", 20),
        (DATE, ROUND, "", 20),
    ],
)
def test_every_step_validates_before_touching_the_remote(
    null_site: RemoteSite, func: Any, date: str, round: str, run_key: str, code: int
) -> None:
    before = commands(null_site)
    with pytest.raises(StepError) as exc:
        func(null_site, date=date, round=round, run_key=run_key)
    assert exc.value.result.error.code == code
    assert commands(null_site) == before  # not a single remote command
    assert not Path("/tmp/pwned-step2").exists()


def test_tasks_follow_the_contract() -> None:
    """Task name = step id; plain parameters date, round, run_key, site (+ options)."""
    import inspect

    from steps import step1_first_jobs as s1
    from steps import step2_second_jobs as s2

    tasks = {
        "step1_1": s1.step1_1,
        "step1_2": s1.step1_2,
        "step1_3": s1.step1_3,
        "step1_4": s1.step1_4,
        "step2_1": s2.step2_1,
        "step2_2": s2.step2_2,
        "step2_3": s2.step2_3,
        "step2_4": s2.step2_4,
        "step2_5": s2.step2_5,
    }
    for name, t in tasks.items():
        assert t.name == name and t.persist_result is True
        params = inspect.signature(t.fn).parameters
        assert list(params)[:4] == ["date", "round", "run_key", "site"]
        assert params["site"].default == "default"
    for name in ("step1_1", "step2_1"):
        params = inspect.signature(tasks[name].fn).parameters
        assert {"max_wait_minutes", "poll_seconds", "submit_job", "genjob_timeout_minutes"} <= set(
            params
        )
        assert params["submit_job"].default is True
    assert "check_ist" in inspect.signature(s1.step1_3.fn).parameters
    assert "max_wait_minutes" in inspect.signature(s2.step2_4.fn).parameters
