"""The error policy: which failures Prefect retries, and what the flow does with the rest.

The action comes from the step's error code (the legacy dictionary): ``retry`` → Prefect task
retries with the definition's delays; ``continue`` → a warning, the flow goes on; ``manual``
(and ``ai``, which has no AI behind it here) → the flow pauses for an operator; ``exit`` → the
flow ends its work normally. Failures of the remote layer (connection lost, command timeout,
download mismatch) are retried like ``retry`` codes, after the SSH layer's own short backoff
(steps/remote/retry.py). A required report that still cannot be downloaded (1402, 2503,
4202, 5403, 6203, steps/errors.py REQUIRED_DOWNLOAD_CODES) is not a ``continue``: its step
fails for an operator's decision at once, the transient part having been retried below. Anything else, and a ``retry`` failure
whose retries are exhausted, fails the flow run, which can then be retried as a whole
(completed steps come back cached).
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Any

from prefect.client.schemas.objects import State, TaskRun

from flows.definitions import StepDefinition
from flows.naming import task_run_name
from steps.remote.errors import RemoteError
from steps.results import StepError

# Multiplies every retry delay of the definitions (tests and demos run with a small scale).
DELAY_SCALE_ENV = "TOPUP_RETRY_DELAY_SCALE"
MIN = 60.0


class Reaction(StrEnum):
    GO_ON = "continue"  # warning logged, next step
    ASK = "manual"  # pause for an operator's decision
    FAIL = "fail"  # the flow run fails
    EXIT = "exit"  # stop here, the run ends without error


def failure_of(state: State[Any]) -> BaseException | None:
    """The exception a failed task state carries (in memory or from the result store)."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    try:
        value = state.result(raise_on_failure=False)
    except Exception as exc:  # the persisted exception could not be read back
        return exc
    return value if isinstance(value, BaseException) else None


def is_retryable(exc: BaseException | None) -> bool:
    """Retry only what the dictionary says to retry, and transient remote failures."""
    if isinstance(exc, StepError):
        return exc.action == "retry"
    return isinstance(exc, RemoteError)


def retry_condition(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of every step task."""
    return is_retryable(failure_of(state))


def never_retry(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of the irreversible tasks."""
    return False


def reaction(exc: BaseException) -> Reaction:
    """What the flow does once a step's task has failed for good."""
    if isinstance(exc, StepError):
        action = exc.action
        if action == "continue":
            return Reaction.GO_ON
        if action in ("manual", "ai"):
            return Reaction.ASK
        if action == "exit":
            return Reaction.EXIT
    return Reaction.FAIL


def delay_scale() -> float:
    try:
        return max(0.0, float(os.environ.get(DELAY_SCALE_ENV, "1")))
    except ValueError:
        return 1.0


def timeout_minutes(step: StepDefinition, max_wait_minutes: float | None) -> float:
    """The task's hard limit: the definition's, stretched when the wait limit is raised.

    The definition's timeout covers its own wait option plus a margin (job generation,
    polling); a larger ``max_wait_minutes`` keeps that margin instead of being cut short.
    """
    base = step.timeout_minutes
    own_wait = step.options.get("max_wait_minutes")
    if max_wait_minutes is None or own_wait is None or not step.batch_wait:
        return base
    return max(base, max_wait_minutes + max(0.0, base - float(own_wait)))


def irreversible(task_name: str) -> bool:
    """A task whose remote action cannot be undone (a real database submission)."""
    return task_name.startswith("step8_") and task_name.endswith("_submit")


def task_options(
    step: StepDefinition, max_wait_minutes: float | None, task_name: str | None = None
) -> dict[str, Any]:
    """``Task.with_options`` arguments from the definition.

    An irreversible task is never retried by Prefect, whatever the definition says: what
    happens after its failure is a person's decision. With ``task_name`` the task run is
    named by the step's label and title (``1.4 Merge the interval plots ...``).
    """
    named = (
        {"task_run_name": task_run_name(step.label, step.title, task_name, step.tasks)}
        if task_name is not None
        else {}
    )
    if task_name is not None and irreversible(task_name):
        return {
            **named,
            "retries": 0,
            "retry_delay_seconds": 0,
            "timeout_seconds": timeout_minutes(step, max_wait_minutes) * MIN,
            "retry_condition_fn": never_retry,
        }
    delays = step.retry_delays(delay_scale())
    return {
        **named,
        "retries": step.retries,
        "retry_delay_seconds": delays or 0,
        "timeout_seconds": timeout_minutes(step, max_wait_minutes) * MIN,
        "retry_condition_fn": retry_condition,
    }
