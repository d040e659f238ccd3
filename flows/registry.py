"""Step tasks by name: the definitions name tasks, this module finds the Prefect tasks.

The step modules are imported lazily (on first lookup) so that importing a flow module stays
cheap and free of side effects.
"""

from __future__ import annotations

import importlib
from typing import Any

from prefect import Task

STEP_MODULES = (
    "steps.step0_dates",
    "steps.step1_first_jobs",
    "steps.step2_second_jobs",
    "steps.step3_search_peak",
    "steps.step4_check_shield",
    "steps.step5_ets_cut",
    "steps.step6_check_ets_cut",
    "steps.step7_reset",
    "steps.step8_database",
    "steps.step8_exclusion",
)

_tasks: dict[str, Task[Any, Any]] = {}


def _collect() -> dict[str, Task[Any, Any]]:
    if not _tasks:
        for module_name in STEP_MODULES:
            module = importlib.import_module(module_name)
            for value in vars(module).values():
                if isinstance(value, Task):
                    _tasks[value.name] = value
    return _tasks


def step_task(name: str) -> Task[Any, Any]:
    """The task named ``name`` (e.g. ``step1_1``, ``step8_2_submit``)."""
    try:
        return _collect()[name]
    except KeyError:
        raise LookupError(f"no step task named {name!r}") from None


def task_names() -> list[str]:
    return sorted(_collect())
