"""Cancellation mid-step and a worker crash mid-step, with the real worker and sshd.

- Cancel: the worker kills the flow-run process, then runs the flow's ``on_cancellation``
  hook, which removes the run's batch jobs and kills its detached commands on the site.
- Crash: SIGKILL of the worker and its flow-run process (nothing runs any hook); the run is
  set back to Scheduled through the API and a new worker runs it again. Completed steps come
  back cached, the interrupted step re-attaches to its detached generator and to the jobs it
  had submitted: no job is submitted twice.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from prefect.states import Cancelling, Scheduled

from tests.fixtures_stack import PREAPPROVED, StackRuns
from tests.stack.helpers import (
    SIM_FAST,
    completed_names,
    running_detached,
    state_name,
    step_name,
    step_tasks,
)
from topup_cli.processes import alive
from topup_cli.stack import PrefectStack

pytestmark = pytest.mark.slow

DATE = "250626"
RUNS_OF_DATE = [85420, 85421, 85422]
SUBSET = {"workflow": "topup-standard-steps", "workflow_version": "1.0.2"}


def _running(stack_runs: StackRuns, run_id: Any, step: str) -> None:
    stack_runs.wait_task(
        run_id,
        lambda ts: any(
            step_name(t) == step and t.state is not None and t.state.is_running() for t in ts
        ),
        what=f"{step} running",
    )


def _poll(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def test_cancel_mid_step_removes_jobs_and_kills_detached_commands(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    # Step 2.1: the generator submits one run's jobs, then pauses before the next (still
    # running, detached), and the submitted jobs never finish.
    sim.set_faults(**{**SIM_FAST, "pause_seconds": 30.0, "never_finish": {"2": RUNS_OF_DATE}})
    run = stack_runs.start(
        "topup-standard-1.0.0",
        date=DATE,
        round="round18",
        site=stack_site,
        max_wait_minutes=10.0,
        **PREAPPROVED,
    )
    run_key = str(run.id)
    _running(stack_runs, run.id, "step2_1")
    jobs = _poll(
        lambda: [j for j in sim.active_jobs() if "/DataValid/" + DATE in j["cwd"]],
        60,
        "step 2.1 jobs in the batch queue",
    )
    generators = _poll(
        lambda: running_detached(sim.control_dir, run_key), 30, "the detached generator"
    )
    assert any(".2_1." in key for key in generators), generators

    with stack.sync_client() as client:
        client.set_flow_run_state(run.id, Cancelling(), force=True)
    done = stack_runs.wait(run.id, timeout=90)
    assert state_name(done) == "Cancelled", done.state

    # The hook runs once the process is gone; poll for its effect with a deadline.
    _poll(lambda: not sim.active_jobs(), 60, f"the run's jobs {jobs} to leave the queue")
    _poll(
        lambda: not running_detached(sim.control_dir, run_key),
        30,
        "the run's detached commands to be killed",
    )
    assert "step2_1" not in completed_names(stack_runs.task_runs(run.id))


def test_worker_killed_mid_step_then_rescheduled_completes_without_resubmitting(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    sim.set_faults(**{**SIM_FAST, "job_seconds": 6.0})
    run = stack_runs.start(
        "topup-standard-1.0.0",
        date=DATE,
        round="round18",
        site=stack_site,
        max_wait_minutes=3.0,
        poll_seconds=0.2,
        **SUBSET,
    )
    _running(stack_runs, run.id, "step1_1")
    # Inside the job wait: every job of the date submitted, none finished.
    _poll(lambda: len(sim.active_jobs()) == len(RUNS_OF_DATE), 60, "the step-1 jobs")
    before = sim.submissions()
    assert len(before) == len(RUNS_OF_DATE)

    worker = stack.worker
    assert worker is not None
    tree = worker.tree()
    assert len(tree) >= 2, "the flow-run process should run below the worker"
    stack.kill_worker()
    assert not any(alive(k) for k in tree), "a process of the killed worker survived"
    # Nobody is left to report on the run: Prefect still shows it Running.
    assert state_name(stack_runs.read(run.id)) == "Running"

    with stack.sync_client() as client:
        client.set_flow_run_state(run.id, Scheduled(), force=True)
    stack.start_worker()
    # The dead process's round slot is released when its lease expires (60 s at least).
    done = stack_runs.wait(run.id, timeout=240)
    assert state_name(done) == "Completed", done.state
    assert done.run_count >= 2

    after = sim.submissions()
    keys = [(s["cwd"], s["jobfile"]) for s in after]
    assert len(keys) == len(set(keys)), f"a job was submitted twice: {keys}"
    assert after == before
    tasks = step_tasks(stack_runs.settled_task_runs(run.id))
    assert {"step1_1", "step1_2", "step1_3", "step1_4"} <= completed_names(tasks)


def test_cancel_while_waiting_for_an_operator_ends_the_process_and_frees_the_round(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    """Found by the load suite: a run cancelled while paused for input kept its process (and
    the round's slot) until the pause timed out, so no other date of the round could start."""
    sim.set_faults(**{**SIM_FAST, "ist": {str(RUNS_OF_DATE[1]): 14000000}})
    run = stack_runs.start(
        "topup-standard-steps-1.0.2",
        date=DATE,
        round="round18",
        site=stack_site,
        poll_seconds=0.2,
        max_wait_minutes=1.0,
        **SUBSET,
    )
    paused = stack_runs.wait(
        run.id, lambda r: r.state is not None and r.state.is_paused(), 300, "Paused"
    )
    pid = int(str(paused.infrastructure_pid).rsplit(":", 1)[-1])
    key = (pid, _start_key(pid))
    assert alive(key), "the paused run's process should be waiting for its answer"
    with stack.sync_client() as client:
        client.set_flow_run_state(run.id, Cancelling())
    done = stack_runs.wait(run.id, timeout=60)
    assert state_name(done) == "Cancelled", done.state
    deadline = time.monotonic() + 90
    while alive(key):
        assert time.monotonic() < deadline, "the cancelled run's process is still waiting"
        time.sleep(0.2)
    with stack.sync_client() as client:
        while client.read_global_concurrency_limit_by_name("topup-round-round18").active_slots:
            assert time.monotonic() < deadline, "the round's slot was not given back"
            time.sleep(0.2)


def _start_key(pid: int) -> int:
    """The start time of ``pid`` as ``topup_cli.processes`` keys it."""
    from topup_cli.processes import _key

    key = _key(pid)
    assert key is not None, f"process {pid} is not running"
    return key[1]
