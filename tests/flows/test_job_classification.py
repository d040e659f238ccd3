"""A crashed batch job is an operator's decision at once, not minutes of task retries.

Issue 11 part 3 through the whole flow (real Prefect, real sshd pair): the crash code is a
``manual`` code, so the policy pauses the run after ONE task attempt with the evidence in
the form; a still-running job keeps the retried TIMEOUT path (``test_failures.py``).
"""

from __future__ import annotations

import time

from prefect import tags
from prefect.flow_runs import resume_flow_run

from flows.topup_standard import topup_standard
from store import repository
from tests.chaos.report import record
from tests.flows.conftest import FAST, Driver, FlowEnv, task_runs, unique_tag, wait_paused
from tests.flows.test_operator import _form_description

DATE = "250626"  # 3 runs: 85420 85421 85422
SUBSET = {"workflow": "topup-standard-steps", "workflow_version": "1.0.2"}


def test_crash_pauses_at_once_with_its_evidence_and_abort_ends_it(flow_env: FlowEnv) -> None:
    flow_env.sim.set_faults(crash={"1": [85421]}, crash_line="Error: cannot allocate 4096 MB")
    tag = unique_tag()
    seen: dict[str, str] = {}

    def operator() -> None:
        run = wait_paused(tag, key="step1-1-manual-1")
        seen["asked_after"] = f"{time.monotonic() - started:.1f}"
        seen["form"] = _form_description(run.id, "step1-1-manual-1")
        # one attempt only: a crash is never retried by Prefect
        (task,) = [t for t in task_runs(run.id) if t.task_key.startswith("step1_1")]
        seen["run_count"] = str(task.run_count)
        resume_flow_run(run.id, run_input={"action": "abort", "name": "erin", "note": "OOM"})

    started = time.monotonic()
    with Driver(operator) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_cancelled() and "aborted by erin at step 1.1" in (state.message or "")
    assert seen["run_count"] == "1"
    form = seen["form"]
    assert "1114 STEP1_1_JOBS_CRASHED" in form and "[85421]" in form
    assert "rec85421_1.txt.bosserr: Error: cannot allocate 4096 MB" in form
    run_id = str(state.state_details.flow_run_id)
    (decision,) = repository.decisions(run_id)
    assert (decision.decision, decision.error_code) == ("abort", 1114)
    # nothing was resubmitted: the three first-pass jobs only
    assert len([s for s in flow_env.sim.submissions() if s["jobfile"].endswith("_1.txt")]) == 3
    record(
        group="transient",
        scenario="a first-pass job crashes (error line in .bosserr, empty output), whole run",
        injected="sim fault crash={1: [85421]} with crash_line",
        kind="permanent",
        retries=0,
        lost_seconds=None,
        outcome=f"1114 JOBS_CRASHED: operator asked {seen['asked_after']} s after the start "
        "(one task attempt, evidence in the form); abort -> Cancelled",
    )
