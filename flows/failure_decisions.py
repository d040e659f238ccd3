"""What a person decides when a step fails with a ``manual`` error code.

The form shows the error and what the step saw; the choices are continue, retry or abort,
and only retry or abort when there is nothing to go on from (``NO_CONTINUE_CODES``).
"""

from __future__ import annotations

from flows.decisions import Decisions
from flows.definitions import StepDefinition
from flows.operator import OperatorDecision, RetryDecision, pause_key
from steps.errors import REQUIRED_DOWNLOAD_CODES
from steps.results import StepError, StepResult

# Errors with nothing to go on from: a required report is missing (the gate would stop at it
# anyway), the date has no raw data (code 70), or an input is invalid (20, 21, 22).
NO_CONTINUE_CODES = frozenset(REQUIRED_DOWNLOAD_CODES) | {20, 21, 22, 70}


def manual(
    decisions: Decisions, step: StepDefinition, task_name: str, exc: StepError, attempt: int
) -> str:
    """Pause for an operator's decision on a manual error; returns continue or retry."""
    info = exc.result.error
    code = f"{info.code} {info.name}" if info else "?"
    decisions.log.warning(
        "step %s needs an operator: [%s] %s", step.label, code, exc.result.message
    )
    # a required report that did not download, a date without raw data or a bad input
    # cannot be accepted and passed over: only retry (after fixing the cause) or abort
    required = info is not None and info.code in NO_CONTINUE_CODES
    model: type[OperatorDecision] | type[RetryDecision] = (
        RetryDecision if required else OperatorDecision
    )
    got = decisions.hear(
        model,
        key=pause_key(task_name, "manual", attempt),
        description=_manual_text(step, task_name, exc.result, code, required),
    )
    decisions.record(
        step, got, "manual", task_name=task_name, error_code=info.code if info else None
    )
    decisions.log.info("operator %s chose %s for step %s", got.by, got.choice, step.label)
    got.stop_if_aborted(f"at step {step.label} ({task_name}) after [{code}]")
    return got.choice


def _manual_text(
    step: StepDefinition, task_name: str, result: StepResult, code: str, required: bool
) -> str:
    """The manual error's form: the error, what the step saw, and the choices it offers."""
    return (
        f"## Step {result.step or step.label} ({task_name}) needs a decision\n\n"
        f"**[{code}]** {result.message}\n\n"
        + _facts(result)
        + (
            ""
            if required
            else "\n\n- **continue**: accept and go on"
            + (f" (the step runs again with {step.continue_with})" if step.continue_with else "")
        )
        + "\n- **retry**: run the step again (after fixing the cause)"
        + "\n- **abort**: stop this run (it ends Cancelled)\n"
    )


def _facts(result: StepResult) -> str:
    """A short account of what the step saw, for the pause form."""
    lines: list[str] = []
    if result.runs_incomplete:
        lines.append(f"- runs incomplete: {result.runs_incomplete}")
    if result.runs_complete:
        lines.append(f"- runs complete: {len(result.runs_complete)}")
    for key in ("invalid_runs", "anomaly_file", "missing_dirs", "left_behind"):
        if key in result.data:
            lines.append(f"- {key}: {result.data[key]}")
    ist = result.data.get("ist_results")
    if isinstance(ist, dict) and result.data.get("invalid_runs"):
        bad = {r: v for r, v in ist.items() if int(r) in result.data["invalid_runs"]}
        lines.append(f"- IST values (From_DB, before, after sorting) of those runs: {bad}")
    return "\n".join(lines)
