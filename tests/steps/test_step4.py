"""Steps 4.1 – 4.2 against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError, StepResult
from steps.step4_check_shield import FAMILIES, check_shield_jobs, merge_shield_pdfs
from tests.steps import (
    DATE,
    FAST,
    ROUND,
    RUNS,
    assert_only_stuck_incomplete,
    open_remote,
    pdf_pages,
    sha256,
)

WAIT = {"max_wait_minutes": 1, "poll_seconds": 0.1}
TOPUP = 85421  # the run of DATE with windows in window.dat: the checker draws its plots


def prepare(sim: Any) -> None:
    """What steps 2 and 3 leave: this date's hist files and a window.dat line for TOPUP."""
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")
    window = sim.stage_dir("search_peak") / "window.dat"
    with window.open("a") as fh:
        fh.write(f"{TOPUP}     0.54     4.12     21.87     22.47\n")


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    prepare(sim)
    yield from open_remote(ssh_settings, tmp_path / "downloads")


@pytest.fixture
def local_site(sim: Any, local_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    prepare(sim)
    yield from open_remote(local_settings, tmp_path / "downloads")


def _dir(sim: Any) -> Path:
    return sim.stage_dir("checkShieldCalib")


def _stage4(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).endswith("_4.txt")]


def _run_4_1(site: RemoteSite, run_key: str = "rk4", **kw: Any) -> StepResult:
    return check_shield_jobs(site, date=DATE, round=ROUND, run_key=run_key, **{**WAIT, **kw})


def _run_4_2(site: RemoteSite, run_key: str = "rk4") -> StepResult:
    return merge_shield_pdfs(site, date=DATE, round=ROUND, run_key=run_key)


# --------------------------------------------------------------------------- 4.1


def test_checker_jobs_wait_for_every_job_to_end(site: RemoteSite, sim: Any) -> None:
    d = _dir(sim)
    (d / "old.pdf").write_text("stale")
    result = _run_4_1(site)  # check defaults to True: wait for the jobs to END
    assert result.outcome == Outcome.SUCCESS
    assert result.runs_complete == RUNS and result.data["check"] is True
    assert not (d / "old.pdf").exists()  # legacy cleanup on the first submission
    # every job ended (its batch log is there), but only the topup run drew plots
    for r in RUNS:
        assert list(d.glob(f"run_{r}_4.txt.out.*"))
    assert result.data["png_runs"] == [TOPUP]
    assert {Path(r.path).name for r in result.files} == {f"run{TOPUP}_{f}.png" for f in FAMILIES}
    for rec in result.files:
        assert rec.sha256 == sha256(Path(rec.path)) and rec.content_type == "image/png"
    assert sorted(s["jobfile"] for s in _stage4(sim)) == [f"run_{r}_4.txt" for r in RUNS]

    # a retry re-attaches: no cleanup, no second submission
    (d / "keep.pdf").write_text("must survive")
    again = _run_4_1(site)
    assert again.data["png_runs"] == [TOPUP] and len(_stage4(sim)) == len(RUNS)
    assert (d / "keep.pdf").exists()


def test_without_check_it_returns_after_submitting(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(job_seconds=60)
    result = _run_4_1(local_site, check=False)
    assert sim.active_jobs()  # returned while the jobs still run
    assert result.data["check"] is False and "png_runs" not in result.data
    assert len(_stage4(sim)) == 3


def test_non_topup_data_is_normal(local_site: RemoteSite, sim: Any) -> None:
    # no window line for any run of the date: no plots at all, still a success
    window = sim.stage_dir("search_peak") / "window.dat"
    window.write_text("".join(ln + "\n" for ln in window.read_text().splitlines()[:-1]))
    result = _run_4_1(local_site)
    assert result.runs_complete == RUNS and result.data["png_runs"] == []
    assert "non-topup" in result.message and result.files == []


def test_never_finishing_job_times_out_4104(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"4": [85420]})
    with pytest.raises(StepError) as exc:
        _run_4_1(local_site, max_wait_minutes=0.05)
    res = exc.value.result
    assert res.error.code == 4104 and exc.value.action == "retry"
    assert res.data["timed_out"] is True
    assert_only_stuck_incomplete(res, 85420)


def test_check_only_without_job_files_is_4103(local_site: RemoteSite, sim: Any) -> None:
    with pytest.raises(StepError) as exc:
        _run_4_1(local_site, submit_job=False)
    assert exc.value.result.error.code == 4103
    assert sim.submissions() == []


# --------------------------------------------------------------------------- 4.2


def test_four_pdfs_of_this_dates_plots_are_downloaded(site: RemoteSite, sim: Any) -> None:
    _run_4_1(site)
    d = _dir(sim)
    # plots of another date's run in the same directory must not get into the PDFs
    for fam in FAMILIES:
        (d / f"run85001_{fam}.png").write_bytes((d / f"run{TOPUP}_{fam}.png").read_bytes())
    result = _run_4_2(site)
    assert result.outcome == Outcome.SUCCESS and result.runs_complete == [TOPUP]
    downloads = [r for r in result.files if r.role == "download"]
    assert sorted(Path(r.local_path).name for r in downloads) == sorted(
        f"{fam}_{DATE}.pdf" for fam in FAMILIES
    )
    for rec in downloads:
        local = Path(rec.local_path)
        assert local.parent == Path(site.settings.downloads_dir) / "rk4"
        assert sha256(local) == rec.sha256 == sha256(Path(rec.path))
        assert pdf_pages(local) == 1 and local.read_bytes().startswith(b"%PDF")
    pdfs = {Path(r.path).name for r in result.files if r.role == "pdf"}
    assert pdfs == {f"{fam}.pdf" for fam in FAMILIES}
    verified = {Path(r.path).name for r in result.files if r.role == "verified"}
    assert verified == {f"run{TOPUP}_{fam}.png" for fam in FAMILIES}


def test_no_plot_means_no_pdf_and_success_4002(local_site: RemoteSite, sim: Any) -> None:
    result = _run_4_2(local_site)
    assert result.outcome == Outcome.SUCCESS and result.error is None
    assert result.data["success_code"] == 4002 and "non-topup" in result.message
    assert not list(_dir(sim).glob("*.pdf"))


def test_merge_failure_is_a_warning_4201(local_site: RemoteSite, sim: Any) -> None:
    _run_4_1(local_site)
    sim.set_faults(container_exit=2)
    with pytest.raises(StepError) as exc:
        _run_4_2(local_site)
    assert exc.value.result.error.code == 4201 and exc.value.action == "continue"
    assert exc.value.result.outcome == Outcome.WARNING


def test_download_failure_needs_an_operator_4202(
    site: RemoteSite, sim: Any, sim_ssh: SshPair
) -> None:
    """The four cut/check PDFs are required reports: a failed download is ``manual``."""
    _run_4_1(site)
    site.settings.ssh_retry_seconds = 0.5  # the transport reads its budget per call
    sim_ssh.set_sftp_fail(True)
    try:
        with pytest.raises(StepError) as exc:
            _run_4_2(site)
    finally:
        sim_ssh.set_sftp_fail(False)
    res = exc.value.result
    assert res.error.code == 4202 and res.outcome == Outcome.FAILED
    assert exc.value.action == "manual"
    assert sorted(res.data["download_errors"]) == sorted(f"{f}.pdf" for f in FAMILIES)
    assert not list((Path(site.settings.downloads_dir) / "rk4").glob("*.pdf"))
    assert {Path(r.path).name for r in res.files if r.role == "pdf"} == {
        f"{f}.pdf" for f in FAMILIES
    }
