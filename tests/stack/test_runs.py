"""Flow runs of the deployments, executed by the process worker of a real Prefect server:
a complete run, and a run suspended from outside and resumed."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.flow_runs import resume_flow_run, suspend_flow_run

from tests.fixtures_stack import PREAPPROVED, StackRuns
from tests.stack.helpers import (
    SIM_FAST,
    completed_names,
    state_name,
    step_name,
    step_tasks,
)
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

DEPLOYMENT = "topup-standard-1.2.0"
DATE = "250626"  # round18, three runs


def test_run_from_deployment_completes(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    sim.set_faults(**SIM_FAST)
    run = stack_runs.start(
        DEPLOYMENT, date=DATE, round="round18", site=stack_site, max_wait_minutes=1.0, **PREAPPROVED
    )
    # Start latency is measured by the benchmarks (bench/), not asserted here.
    done = stack_runs.wait(run.id, timeout=300)
    assert state_name(done) == "Completed", done.state
    assert done.parameters["workflow_version"] == "1.2.0"  # the deployment's parameter
    assert done.state is not None
    assert done.state.message == "completed; every required output verified"
    names = completed_names(stack_runs.settled_task_runs(run.id))
    assert {"step1_1", "step2_5", "step6_2", "step7"} <= names
    # A date's run ends after the reset: nothing reaches the database (submit-constants does)
    assert not any(n.startswith("step8") for n in names) and sim.db_ledger() == []


def test_suspended_run_resumes_and_completed_steps_come_back_cached(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    # Slow enough jobs that the suspension lands in the middle of the workflow.
    sim.set_faults(**{**SIM_FAST, "job_seconds": 1.0})
    run = stack_runs.start(
        DEPLOYMENT, date=DATE, round="round18", site=stack_site, max_wait_minutes=1.0, **PREAPPROVED
    )
    stack_runs.wait_task(
        run.id, lambda ts: len(completed_names(ts)) >= 2, timeout=120, what="two completed steps"
    )
    with stack.api_settings():
        suspend_flow_run(flow_run_id=run.id)

    suspended = stack_runs.wait(
        run.id, lambda r: r.state is not None and r.state.is_paused(), what="Suspended"
    )
    assert state_name(suspended) == "Suspended"
    # The step running at the suspension finishes; then the flow process exits.
    before = stack_runs.wait_task(
        run.id,
        lambda ts: not any(t.state and t.state.is_running() for t in ts),
        timeout=120,
        what="no running step",
    )
    done_before = completed_names(before)
    assert len(done_before) >= 2
    assert "step7" not in done_before, "the flow did not stop at the suspension"
    assert state_name(stack_runs.read(run.id)) == "Suspended"

    with stack.api_settings():
        resume_flow_run(run.id)
    done = stack_runs.wait(run.id, timeout=300)
    assert state_name(done) == "Completed", done.state

    after = step_tasks(stack_runs.settled_task_runs(run.id))
    cached = {step_name(t) for t in after if state_name(t) == "Cached"}
    assert done_before <= cached, f"not cached on resume: {sorted(done_before - cached)}"
    assert "step7" in completed_names(after)
    # Each step before the suspension ran (submitted its jobs) exactly once.
    kinds = [(s["cwd"], s["jobfile"]) for s in sim.submissions()]
    assert len(kinds) == len(set(kinds))
