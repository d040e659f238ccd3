"""Statistics over Prefect's flow and task runs: step durations, failures, runs by state.

Why computed, not stored: Prefect already keeps every run with its timings and final state;
aggregating on request keeps a single source of truth.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from prefect.client.schemas.objects import FlowRun, StateType, TaskRun

from facade import legacy
from flows.definitions import WorkflowDefinition

_FLOW_STATE_TO_LEGACY = {
    StateType.SCHEDULED: legacy.RUNNING,
    StateType.PENDING: legacy.RUNNING,
    StateType.RUNNING: legacy.RUNNING,
    StateType.PAUSED: legacy.PAUSED,
    StateType.COMPLETED: legacy.SUCCESS,
    StateType.FAILED: legacy.FAILED,
    StateType.CRASHED: legacy.FAILED,
    StateType.CANCELLING: legacy.CANCELLED,
    StateType.CANCELLED: legacy.CANCELLED,
}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def step_of(task_name: str, definitions: Iterable[WorkflowDefinition]) -> str | None:
    for defn in definitions:
        step = defn.step_for_task(task_name)
        if step is not None:
            return step.id
    return None


def compute(
    flow_runs: Sequence[FlowRun],
    task_runs: Sequence[TaskRun],
    definitions: Sequence[WorkflowDefinition],
) -> dict[str, Any]:
    durations: dict[str, list[float]] = {}
    failures: Counter[tuple[str, int | None, str | None]] = Counter()
    failed_by_step: Counter[str] = Counter()
    for tr in task_runs:
        step = step_of(legacy.task_name_of(tr), definitions)
        if step is None or tr.state is None:
            continue
        if tr.state.type == StateType.COMPLETED and tr.state.name != "Cached":
            durations.setdefault(step, []).append(tr.total_run_time.total_seconds())
        elif tr.state.type in (StateType.FAILED, StateType.CRASHED):
            code, name = legacy.error_code(tr.state.message)
            failures[(step, code, name)] += 1
            failed_by_step[step] += 1

    steps = {}
    for step in sorted(set(durations) | set(failed_by_step)):
        values = durations.get(step, [])
        steps[step] = {
            "completed": len(values),
            "failed": failed_by_step.get(step, 0),
            "median_seconds": round(statistics.median(values), 3) if values else None,
            "p95_seconds": round(percentile(values, 95), 3) if values else None,
            "mean_seconds": round(statistics.fmean(values), 3) if values else None,
        }
    by_state: Counter[str] = Counter()
    by_prefect_state: Counter[str] = Counter()
    for fr in flow_runs:
        if fr.state is None:
            continue
        by_state[_FLOW_STATE_TO_LEGACY.get(fr.state.type, legacy.RUNNING)] += 1
        by_prefect_state[fr.state.name or fr.state.type.value] += 1
    return {
        "steps": steps,
        "failures": [
            {"step": step, "error_code": code, "error_name": name, "count": count}
            for (step, code, name), count in sorted(
                failures.items(), key=lambda item: (-item[1], item[0][0], item[0][1] or 0)
            )
        ],
        "runs_by_state": dict(sorted(by_state.items())),
        "runs_by_prefect_state": dict(sorted(by_prefect_state.items())),
        "runs_total": sum(by_state.values()),
    }
