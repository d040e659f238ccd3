"""cancel_run against the simulated site: batch jobs and detached commands of one run go."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from steps.cleanup import cancel_run
from steps.config import SiteSettings
from steps.remote.site import RemoteSite
from steps.results import StepError
from steps.step3_search_peak import search_peak_jobs
from tests.steps import DATE, FAST, ROUND, RUNS, commands, open_remote, wait_until


@pytest.fixture
def site(sim: Any, ssh_settings: SiteSettings, tmp_path: Path) -> Iterator[RemoteSite]:
    sim.set_faults(**FAST)
    for r in RUNS:
        (sim.hist() / f"hist{r}.root").write_text(f"root hist {r}\n")
    yield from open_remote(ssh_settings, tmp_path / "downloads")


def _hep_q(site: RemoteSite) -> str:
    res = site.run(f"{site.env_prefix()}hep_q")
    assert res.ok, res.stderr
    return res.stdout


def test_cancel_removes_the_runs_jobs_and_detached_commands(site: RemoteSite, sim: Any) -> None:
    sim.set_faults(never_finish={"3": [85421]})
    with pytest.raises(StepError):
        search_peak_jobs(
            site, date=DATE, round=ROUND, run_key="rkc", max_wait_minutes=0.01, poll_seconds=0.1
        )
    (stuck,) = [s for s in sim.submissions() if s["jobfile"] == "run_85421_3.txt"]
    assert str(stuck["cluster"]) in _hep_q(site)
    # a generator of the same run still running, whose jobs were never recorded
    d = sim.stage_dir("search_peak")
    site.start_detached("rkc.9_9.gen", "hep_sub -g offlinerun run_85420_3.txt && sleep 300", str(d))
    wait_until(lambda: site.detached("rkc.9_9.gen").stdout.count("submitted to cluster"))
    extra = sim.submissions()[-1]
    # another flow run's command must survive
    site.start_detached("other.9_9.sleep", "sleep 300", str(d))

    before = commands(site)
    report = cancel_run(site, "rkc")
    assert commands(site) - before <= 3  # list, one kill, one hep_rm
    assert report["detached_killed"] == ["rkc.9_9.gen"]
    assert stuck["cluster"] in report["job_ids"] and extra["cluster"] in report["job_ids"]
    assert report["hep_rm_exit"] is not None
    wait_until(lambda: str(stuck["cluster"]) not in _hep_q(site))
    assert all(j["cluster"] not in (stuck["cluster"], extra["cluster"]) for j in sim.active_jobs())
    assert site.detached("rkc.9_9.gen").state == "exited"
    assert site.detached("other.9_9.sleep").state == "running"
    site.kill_detached("other.9_9.sleep")


def test_cancel_of_a_run_without_anything_is_harmless(site: RemoteSite, sim: Any) -> None:
    report = cancel_run(site, "nothing-here")
    assert report["detached_killed"] == [] and report["job_ids"] == []
    assert report["hep_rm_exit"] is None


def test_cancel_validates_the_run_key(site: RemoteSite) -> None:
    before = commands(site)
    with pytest.raises(ValueError):
        cancel_run(site, "rk; touch /tmp/pwned-cleanup")
    assert commands(site) == before
    assert not Path("/tmp/pwned-cleanup").exists()
