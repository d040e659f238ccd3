"""One active run per round (``topup-round-<round>``, limit 1), rounds in parallel.

Both runs of a pair are created at once and picked up by the same worker. A run waiting for
its round's slot is already Running in Prefect (the slot is taken inside the flow), so what
must not overlap is the *work*: from a run's first step start to its last step end.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST, interval, overlap, state_name

pytestmark = pytest.mark.slow

# The first-pass subset (steps 1.1-1.4) keeps the pair short; the deployment's flow runs it
# when asked for that definition.
SUBSET = {"workflow": "topup-standard-steps", "workflow_version": "1.0.2"}
# Jobs long enough that each run works for several seconds, far more than the skew between
# the starts of two flow-run processes.
SLOW_JOBS = {**SIM_FAST, "job_seconds": 4.0}


def _run_pair(
    stack_runs: StackRuns, site: str, first: tuple[str, str], second: tuple[str, str]
) -> tuple[Any, Any]:
    runs = [
        stack_runs.start(
            "topup-standard-1.0.0",
            round=round_,
            date=date,
            site=site,
            max_wait_minutes=2.0,
            poll_seconds=0.2,
            **SUBSET,
        )
        for round_, date in (first, second)
    ]
    done = [stack_runs.wait(r.id, timeout=300) for r in runs]
    for d in done:
        assert state_name(d) == "Completed", (d.name, d.state)
    return tuple(interval(stack_runs.task_runs(r.id)) for r in runs)  # type: ignore[return-value]


def test_two_dates_of_one_round_run_one_after_the_other(
    sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    sim.set_faults(**SLOW_JOBS)
    a, b = _run_pair(stack_runs, stack_site, ("round18", "250626"), ("round18", "250625"))
    assert not overlap(a, b), f"steps of one round overlapped: {a} / {b}"


def test_two_rounds_run_in_parallel(sim: Any, stack_site: str, stack_runs: StackRuns) -> None:
    sim.set_faults(**SLOW_JOBS)
    a, b = _run_pair(stack_runs, stack_site, ("round18", "250626"), ("round17", "240501"))
    assert overlap(a, b), f"two rounds did not run in parallel: {a} / {b}"
