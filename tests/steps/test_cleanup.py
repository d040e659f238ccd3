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


def test_cancel_never_kills_a_running_database_submission(site: RemoteSite, sim: Any) -> None:
    """A real submission (``-sub_switch 1``) is waited for, reported, and left whole."""
    from steps.step8_parts import submission_key

    d = sim.stage_dir("search_peak")
    key = submission_key("rkd", "8.1", 85420, 85422)
    marker = d / "submission-finished"
    # Long enough to be running when the cancel comes, on a loaded machine too.
    site.start_detached(key, f"sleep 5 && touch {marker} && echo inserted 3 rows", str(d))
    site.start_detached("rkd.9_9.gen", "sleep 300", str(d))  # an ordinary command of the run
    wait_until(lambda: site.detached(key).state == "running")
    report = cancel_run(site, "rkd", submission_wait_seconds=60)
    assert report["detached_killed"] == ["rkd.9_9.gen"]
    assert [(s["key"], s["exit_code"], s["lost"]) for s in report["submissions"]] == [
        (key, 0, False)
    ]
    assert "inserted 3 rows" in report["submissions"][0]["output"]
    assert marker.exists()  # it ran to its end


def test_cancel_reports_a_submission_still_running_after_the_wait(
    site: RemoteSite, sim: Any
) -> None:
    from steps.step8_parts import submission_key

    d = sim.stage_dir("search_peak")
    key = submission_key("rke", "8.2", 85420, 85422)
    site.start_detached(key, "sleep 30", str(d))
    wait_until(lambda: site.detached(key).state == "running")
    report = cancel_run(site, "rke", submission_wait_seconds=0.5)
    assert report["detached_killed"] == []
    assert report["submissions"] == [{"key": key, "exit_code": None, "lost": False}]
    assert site.detached(key).state == "running"  # never killed: a person decides
    site.kill_detached(key)  # the test's own clean-up
