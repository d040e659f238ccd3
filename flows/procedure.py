"""Running the steps of a workflow definition inside a flow: the procedure itself.

For each step: call its task with the definition's retries/timeout, record what it returned
(or what its error carried), apply the error policy, and pause where a human is needed —
a ``manual`` error, an approval before reset / database submission (unless pre-approved), a
review point after a step (``pause_after``). Step 8 expands into its run range, then per
part a dry run, the approval and the real submission.

The questions themselves live beside it: ``flows/decisions.py`` (the shape every decision
has), ``flows/failure_decisions.py`` (manual errors), ``flows/ist_anomaly.py``,
``flows/date_gate.py`` (before the reset) and ``flows/approvals.py``.
"""

from __future__ import annotations

import inspect
from enum import StrEnum
from typing import Any

from prefect.logging import get_run_logger

from flows import approvals, recording
from flows.approvals import APPROVAL_TEXT, overwrite_notice
from flows.date_gate import gate
from flows.decisions import Decisions
from flows.definitions import DefinitionError, StepDefinition, WorkflowDefinition
from flows.failure_decisions import manual
from flows.ist_anomaly import is_ist_anomaly, ist_decision
from flows.operator import Answer, OutageDecision, ReviewDecision, pause_key
from flows.policy import Reaction, reaction, task_options
from flows.recording import RunRecord
from flows.registry import step_task
from flows.run_options import RunOptions
from steps.remote.errors import RemoteError
from steps.results import StepError, StepResult

__all__ = ["Outcome", "Procedure", "RunOptions", "StepFailed", "check_tasks"]


class StepFailed(Exception):
    """A step failed for good (retries exhausted, or an error no one can decide on)."""


class Outcome(StrEnum):
    DONE = "success"
    WARNED = "warning"  # failed with a continue code, or an operator chose to go on
    SKIPPED = "skipped"
    EXITED = "exit"


def _accepted(task_name: str) -> set[str]:
    return set(inspect.signature(step_task(task_name).fn).parameters)


def check_tasks(definition: WorkflowDefinition) -> None:
    """Every task exists and accepts the definition's options (fail before any remote work)."""
    for step in definition.steps:
        for name in step.tasks:
            try:
                accepted = _accepted(name)
            except LookupError as exc:
                raise DefinitionError(f"{definition.tag}: {exc}") from None
            unknown = set(step.options) - accepted
            if step.kind == "task" and unknown:
                raise DefinitionError(
                    f"{definition.tag}: step {step.id} options {sorted(unknown)} are not "
                    f"parameters of task {name}"
                )


class Procedure:
    """The steps of one flow run, executed in order."""

    def __init__(self, definition: WorkflowDefinition, options: RunOptions, rec: RunRecord):
        self.definition = definition
        self.o = options
        self.rec = rec
        self.log = get_run_logger()
        self.outcomes: dict[str, Outcome] = {}
        self.decisions = Decisions(rec, definition.steps, options.operator_timeout_hours, self.log)

    # ------------------------------------------------------------------ the run
    def run(self, start_at_step: str | None = None) -> dict[str, Any]:
        steps = self.definition.steps
        todo = self.definition.steps_from(start_at_step)
        total = len(steps)
        recording.start_progress(self.rec, total)
        for step in steps[: len(steps) - len(todo)]:
            recording.record_skipped(self.rec, step, f"start_at_step={start_at_step}")
            self.outcomes[step.id] = Outcome.SKIPPED
            recording.advance(self.rec, step, total)
        status = "completed"
        for step in todo:
            self.log.info("step %s (%s): %s", step.label, step.id, step.title)
            outcome = self.run_step(step)
            self.outcomes[step.id] = outcome
            recording.advance(self.rec, step, total)
            if outcome == Outcome.EXITED:
                status = "exited"
                self.log.warning("step %s ended the run early (exit code)", step.label)
                break
            if step.pause_after and outcome != Outcome.SKIPPED:
                self.review(step)
        return {"status": status, "steps": {k: str(v) for k, v in self.outcomes.items()}}

    def run_step(self, step: StepDefinition) -> Outcome:
        """One step: its approval first when it has one, then its task under the policy."""
        if step.kind == "database":
            return self.database(step)
        by: str | None = None
        if step.approval is not None:
            reset = step.approval == "reset"
            clean = gate(self.decisions, self.definition, self.o, step) if reset else True
            by = self.approval(
                step,
                key=pause_key(step.id, "approve"),
                what=APPROVAL_TEXT[step.approval],
                details=overwrite_notice(self.o) if reset else "",
                pre_ok=clean,
            )
            if by is None:
                recording.record_skipped(self.rec, step, "skipped by the operator")
                return Outcome.SKIPPED
        outcome, _ = self.call(step, step.tasks[0], {"approved_by": by} if by else {})
        return outcome

    def review(self, step: StepDefinition) -> None:
        """The review point after a step (``pause_after``): continue or abort."""
        self.decisions.decide(
            ReviewDecision,
            step,
            kind="review",
            key=pause_key(step.id, "review"),
            description=f"## Review after step {step.label}: {step.title}\n"
            + self.decisions.reports(),
        ).stop_if_aborted(f"at the review after step {step.label}")

    # ------------------------------------------------------------------ one task
    def kwargs(self, step: StepDefinition, task_name: str, extra: dict[str, Any]) -> dict[str, Any]:
        """The task's arguments: identity, definition options, flow overrides, extras."""
        accepted = _accepted(task_name)
        kw: dict[str, Any] = {
            "date": self.o.date,
            "round": self.o.round,
            "run_key": self.o.run_key,
            "site": self.o.site,
        }
        kw.update(step.options)
        if self.o.max_wait_minutes is not None and step.batch_wait:
            kw["max_wait_minutes"] = self.o.max_wait_minutes
        if self.o.poll_seconds is not None:
            kw["poll_seconds"] = self.o.poll_seconds
        kw["submit_job"] = self.o.submit_job
        kw["check_ist"] = self.o.check_ist
        kw.update(extra)
        return {k: v for k, v in kw.items() if k in accepted}

    def call(
        self, step: StepDefinition, task_name: str, extra: dict[str, Any]
    ) -> tuple[Outcome, StepResult | None]:
        """Run one task under the policy; returns the outcome and the result when it succeeded."""
        overrides: dict[str, Any] = {}
        attempt = 0
        while True:
            attempt += 1
            kw = self.kwargs(step, task_name, {**extra, **overrides})
            task = step_task(task_name).with_options(
                **task_options(step, kw.get("max_wait_minutes"), task_name)
            )
            try:
                result: StepResult = task(**kw)
            except StepError as exc:
                self._record(step, task_name, exc.result, exc.result.outcome.value)
                react = reaction(exc)
                if react == Reaction.GO_ON:
                    self.log.warning("step %s: %s (continue)", step.label, exc)
                    return Outcome.WARNED, None
                if react == Reaction.EXIT:
                    return Outcome.EXITED, None
                if react == Reaction.FAIL:
                    raise StepFailed(f"step {step.label} ({task_name}) failed: {exc}") from exc
                if is_ist_anomaly(task_name, exc):
                    choice = ist_decision(self.decisions, self.o, step, exc, attempt)
                    if choice is not None:
                        overrides = choice
                    continue
                answer = manual(self.decisions, step, task_name, exc, attempt)
                if answer == "retry":
                    continue
                if step.continue_with and not overrides:
                    # e.g. 1.3: register the runs without the IST check this time
                    overrides = dict(step.continue_with)
                    continue
                return Outcome.WARNED, None
            except (RemoteError, TimeoutError) as exc:
                # retries exhausted (remote layer), or the definition's hard time limit
                if step.approval is not None:
                    # a step a person approved: the outage is theirs to judge, not a failure
                    self.outage(step, task_name, exc, attempt)
                    continue
                raise StepFailed(
                    f"step {step.label} ({task_name}) failed: {type(exc).__name__}: {exc}"
                ) from exc
            self._record(step, task_name, result, "success")
            return Outcome.DONE, result

    def _record(self, step: StepDefinition, task_name: str, result: StepResult, outcome: str):
        missing = recording.record_result(self.rec, step, task_name, result, outcome)
        if missing:
            self.log.warning(
                "step %s: required files not reported: %s",
                step.label,
                ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""),
            )

    # ------------------------------------------------ questions step 8 asks as well
    def _ask(self, model: type[Answer], *, key: str, description: str) -> Answer:
        """Pause for ``model``'s answer (``Decisions.ask``)."""
        return self.decisions.ask(model, key=key, description=description)

    def approval(
        self, step: StepDefinition, *, key: str, what: str, details: str = "", pre_ok: bool = True
    ) -> str | None:
        """Who approved ``step``; None when skipped (``flows/approvals.py``)."""
        return approvals.approval(
            self.decisions, self.o, step, key=key, what=what, details=details, pre_ok=pre_ok
        )

    def outage(
        self,
        step: StepDefinition,
        task_name: str,
        exc: BaseException,
        attempt: int,
        details: str = "",
    ) -> None:
        """An approved step lost the site: ask whether to try again (it re-attaches).

        ``attempt`` must differ per question: a pause key already answered replays its
        answer (that is how a resumed run skips questions it asked before)."""
        self.log.warning(
            "step %s lost the site after its retries: %s: %s", step.label, type(exc).__name__, exc
        )
        got = self.decisions.hear(
            OutageDecision,
            key=pause_key(task_name, "outage", attempt),
            description=(
                f"## Step {step.label} ({task_name}) could not reach the site\n\n"
                f"`{type(exc).__name__}: {str(exc)[:500]}`\n\n"
                "What was started on the site keeps running; **retry** re-attaches to it and "
                "never starts a finished or failed irreversible action again. Check that the "
                "login node answers first.\n\n- **retry**\n- **abort**: stop the run"
                + (f"\n\n{details}" if details else "")
            ),
        )
        fact = f"{type(exc).__name__}: {str(exc)[:300]}"
        self.decisions.record(step, got, "outage", note=got.noted(fact), task_name=task_name)
        got.stop_if_aborted(f"at step {step.label} after losing the site")

    # ----------------------------------------------------------------- step 8
    def database(self, step: StepDefinition) -> Outcome:
        """Step 8 (``flows.submission``): range, then per part dry run, approval, submission."""
        from flows.submission import Submitter

        return Submitter(self, step).run()
