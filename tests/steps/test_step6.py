"""Steps 6.1 – 6.2 against the simulated site (real sshd for the main paths)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import Outcome, StepError, StepResult
from steps.step6_check_ets_cut import check_ets_cut_jobs, merge_ets_checkall
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
KW = {"date": DATE, "round": ROUND}


def prepare(sim: Any) -> None:
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")


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
    return sim.stage_dir("check_ETScut_CalibConst")


def _stage6(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).startswith("ETScut_check_")]


def _run_6_1(site: RemoteSite, run_key: str = "rk6", **kw: Any) -> StepResult:
    return check_ets_cut_jobs(site, **KW, run_key=run_key, **{**WAIT, **kw})


def test_check_jobs_wait_for_png_and_root(site: RemoteSite, sim: Any) -> None:
    d = _dir(sim)
    (d / "stale.root").write_text("x")
    result = _run_6_1(site)
    assert result.outcome == Outcome.SUCCESS and result.runs_complete == RUNS
    assert not (d / "stale.root").exists()  # legacy cleanup `rm -f ETScut* *png *root`
    assert sorted(Path(r.path).name for r in result.files) == sorted(
        n for r in RUNS for n in (f"run{r}.png", f"run{r}.root")
    )
    for rec in result.files:
        assert rec.sha256 == sha256(Path(rec.path)) and rec.run in RUNS
    subs = _stage6(sim)
    assert sorted(s["jobfile"] for s in subs) == [f"ETScut_check_{r}.txt" for r in RUNS]
    assert _run_6_1(site).runs_complete == RUNS and len(_stage6(sim)) == len(RUNS)


def test_check_only_without_job_files_is_manual_6102(local_site: RemoteSite, sim: Any) -> None:
    with pytest.raises(StepError) as exc:
        _run_6_1(local_site, submit_job=False)
    assert exc.value.result.error.code == 6102 and exc.value.action == "manual"
    assert sim.submissions() == []


def test_never_finishing_job_times_out_6103(local_site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"6": [85421]})
    with pytest.raises(StepError) as exc:
        _run_6_1(local_site, max_wait_minutes=0.05)
    res = exc.value.result
    assert res.error.code == 6103
    assert_only_stuck_incomplete(res, 85421)


def test_checkall_pdf_holds_one_page_per_run_of_this_date(site: RemoteSite, sim: Any) -> None:
    _run_6_1(site)
    d = _dir(sim)
    (d / "run85001.png").write_bytes((d / "run85420.png").read_bytes())  # an earlier date
    result = merge_ets_checkall(site, **KW, run_key="rk6")
    assert result.outcome == Outcome.SUCCESS and result.runs_complete == RUNS
    (dl,) = [r for r in result.files if r.role == "download"]
    local = Path(dl.local_path)
    assert local.name == f"mergedd_ETS_checkall_{DATE}.pdf"
    assert pdf_pages(local) == len(RUNS)
    assert sha256(local) == dl.sha256 == sha256(d / "mergedd_ETS_checkall.pdf")


def test_checkall_merge_failure_is_6200_and_no_stale_pdf_is_used(
    local_site: RemoteSite, sim: Any
) -> None:
    _run_6_1(local_site)
    (_dir(sim) / "mergedd_ETS_checkall.pdf").write_bytes(b"%PDF stale pdf of an earlier date")
    sim.set_faults(container_exit=1)
    with pytest.raises(StepError) as exc:
        merge_ets_checkall(local_site, **KW, run_key="rk6")
    assert exc.value.result.error.code == 6200 and exc.value.action == "retry"
    assert not (Path(local_site.settings.downloads_dir) / "rk6").exists()
