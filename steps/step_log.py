"""How a step speaks and fails: its logger and ``fail``, the one way to end a step with a code.

Why its own module: every step module (and the helpers they share) logs and fails the same
way; the error dictionary (``steps.errors``) decides the outcome of a code, never the caller.

- ``step_logger()`` — the Prefect run logger inside a flow/task run, else ``topup.steps``.
- ``fail(step, code, message, **fields) -> NoReturn`` — raise ``StepError`` with the dictionary
  entry of ``code``; outcome WARNING for ``continue`` codes, else FAILED. ``fields`` are
  ``StepResult`` fields (``date``, ``round``, ``runs_complete``, ``files``, ``data`` ...).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from steps import errors
from steps.results import Outcome, StepError, StepResult

__all__ = ["fail", "step_logger"]


def step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run (so lines reach the UI), else ``topup.steps``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("topup.steps")


def fail(step: str, code: int, message: str, **fields: Any) -> NoReturn:
    """Raise ``StepError`` for ``code``; a ``continue`` code gives outcome WARNING."""
    info = errors.error(code)
    outcome = fields.pop("outcome", None)
    if outcome is None:
        outcome = Outcome.WARNING if info.action == "continue" else Outcome.FAILED
    result = StepResult(step=step, outcome=outcome, message=message, error=info, **fields)
    step_logger().warning("step %s: [%s %s] %s", step, info.code, info.name, message)
    raise StepError(result)
