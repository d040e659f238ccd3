"""Which flow parameters each step's task receives: the legacy per-step ``parameters`` map.

Why derived, not written in the definition files: ``Procedure.kwargs`` decides at run time
which flow parameters a task gets (those its signature accepts; ``max_wait_minutes`` only for
steps that wait for batch jobs); a second list in the JSON files would drift from it. The
legacy catalog showed this as ``{function argument: task parameter}`` per step.
"""

from __future__ import annotations

import functools
import inspect

from flows.definitions import StepDefinition, WorkflowDefinition
from flows.registry import step_task

# Flow parameters that Procedure.kwargs hands to any task accepting them, under the same
# name: identity first (a definition option of the same name would replace it), then the
# ones set after the options (the flow's value wins over the option's default), and the
# listing options of step 0 (DatesProcedure).
IDENTITY = ("date", "round", "site")
OVERRIDING = ("submit_job", "check_ist", "poll_seconds", "include_processed", "sort_order")


@functools.lru_cache(maxsize=256)
def _accepted(task_name: str) -> frozenset[str]:
    return frozenset(inspect.signature(step_task(task_name).fn).parameters)


def step_parameters(definition: WorkflowDefinition, step: StepDefinition) -> dict[str, str]:
    """``{task argument: flow parameter}`` for ``step`` (unknown tasks map to nothing).

    A fixed option of the definition (``step.options``) is shown beside it, not in it,
    unless a flow parameter of the same name replaces it at run time."""
    out: dict[str, str] = {}
    for task_name in step.tasks:
        try:
            accepted = _accepted(task_name)
        except LookupError:
            continue
        names = [
            *(n for n in IDENTITY if n not in step.options),
            *OVERRIDING,
            *(("max_wait_minutes",) if step.batch_wait else ()),
        ]
        for name in names:
            if name in accepted and name in definition.parameters:
                out[name] = name
    return out
