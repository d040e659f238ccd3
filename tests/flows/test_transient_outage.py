"""A 2 s jump-host outage in the middle of a run costs seconds, not a task retry (issue 11).

Real Prefect (test harness), the simulated site behind the real sshd pair. While step 1.1's
batch jobs run, the jump host goes away for 2 s (connections dropped, connects refused).
The polls that hit the outage are retried by the SSH layer; the run completes with no task
retry and no operator. The time the outage cost (the transport's own counter) goes to the
"transient vs permanent" table of docs/reliability.md.
"""

from __future__ import annotations

import logging
import time

import pytest
from prefect import tags

from flows.topup_standard import topup_standard
from sim.sshd import SshPair
from steps.session import open_site
from tests.chaos.report import record
from tests.flows.conftest import FAST, Driver, FlowEnv, poll, settled_task_runs, unique_tag
from tests.flows.test_operator import SUBSET

DATE = "250626"


def test_two_second_jump_outage_during_a_run(
    flow_env: FlowEnv, sim_ssh: SshPair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="topup.remote")
    flow_env.sim.set_faults(job_seconds=3.0)  # the jobs outlive the outage
    tag = unique_tag()
    outage: dict[str, float] = {}

    def network() -> None:
        poll(lambda: flow_env.sim.submissions(), 90, "step 1.1's jobs to be submitted")
        outage["at"] = time.monotonic()
        fault = sim_ssh.outage("jump", 2.0)
        assert fault.wait(30), "the jump host did not come back"

    started = time.monotonic()
    with Driver(network) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_completed(), state.message
    run_id = state.result()["flow_run_id"]
    retried = [t.name for t in settled_task_runs(run_id) if (t.run_count or 0) > 1]
    assert retried == [], f"task retries: {retried}"
    stats = open_site("default").transport.stats
    assert stats.retries >= 1
    causes = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "retrying in" in r.getMessage()
    ]
    assert causes and any(
        "Connection refused" in c or "Connection reset" in c or "dropped" in c for c in causes
    ), causes
    record(
        group="transient",
        scenario="jump host down for 2 s during step 1.1's job wait, whole run",
        injected="jump sshd stopped for 2 s (connections dropped, connects refused)",
        kind="transient",
        outcome="Completed; no task retry, no operator",
        retries=stats.retries,
        lost_seconds=round(stats.retry_seconds, 2),
        details=f"run took {time.monotonic() - started:.1f} s; outage began "
        f"{outage['at'] - started:.1f} s after the start",
    )
