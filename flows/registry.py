"""Step tasks by name: the definitions name tasks, this table maps each name to its task.

A plain table, so that a reader (or a tool) can follow a name from a definition file to the
step function: ``"step1_1"`` -> ``steps.step1_first_jobs.step1_1``, declared there with its
label, title and plain function (``first_jobs``; see ``steps/declare.py``). A definition naming
a task missing here fails when it is loaded (``flows/procedure.py`` ``check_tasks``).
"""

from __future__ import annotations

from typing import Any

from prefect import Task

from steps import (
    step0_dates,
    step1_first_jobs,
    step2_second_jobs,
    step3_search_peak,
    step4_check_shield,
    step5_ets_cut,
    step6_check_ets_cut,
    step7_reset,
    step8_database,
    step8_exclusion,
)
from steps.declare import StepDeclaration, declaration_of

TASKS: dict[str, Task[Any, Any]] = {
    "step0": step0_dates.step0,
    "step1_noop": step0_dates.step1_noop,
    "step1_1": step1_first_jobs.step1_1,
    "step1_2": step1_first_jobs.step1_2,
    "step1_3": step1_first_jobs.step1_3,
    "step1_4": step1_first_jobs.step1_4,
    "step2_1": step2_second_jobs.step2_1,
    "step2_2": step2_second_jobs.step2_2,
    "step2_3": step2_second_jobs.step2_3,
    "step2_4": step2_second_jobs.step2_4,
    "step2_5": step2_second_jobs.step2_5,
    "step3_1": step3_search_peak.step3_1,
    "step3_2": step3_search_peak.step3_2,
    "step4_1": step4_check_shield.step4_1,
    "step4_2": step4_check_shield.step4_2,
    "step5_1": step5_ets_cut.step5_1,
    "step5_2": step5_ets_cut.step5_2,
    "step5_3": step5_ets_cut.step5_3,
    "step5_4": step5_ets_cut.step5_4,
    "step6_1": step6_check_ets_cut.step6_1,
    "step6_2": step6_check_ets_cut.step6_2,
    "step7": step7_reset.step7,
    "step8_range": step8_database.step8_range,
    "step8_1_prepare": step8_database.step8_1_prepare,
    "step8_1_submit": step8_database.step8_1_submit,
    "step8_2_prepare": step8_database.step8_2_prepare,
    "step8_2_submit": step8_database.step8_2_submit,
    "step8_3_prepare": step8_database.step8_3_prepare,
    "step8_3_submit": step8_database.step8_3_submit,
    "step8_set_aside": step8_exclusion.step8_set_aside,
}


def step_task(name: str) -> Task[Any, Any]:
    """The task named ``name`` (e.g. ``step1_1``, ``step8_2_submit``)."""
    try:
        return TASKS[name]
    except KeyError:
        raise LookupError(f"no step task named {name!r}") from None


def step_declaration(name: str) -> StepDeclaration:
    """The declaration (label, title, plain function) of the task named ``name``."""
    return declaration_of(step_task(name))


def task_names() -> list[str]:
    return sorted(TASKS)


def _collect() -> dict[str, Task[Any, Any]]:
    """Every step task by name (kept for the tests that walk all of them)."""
    return TASKS
