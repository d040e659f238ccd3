"""Running the steps of a workflow definition inside a flow: the procedure itself.

For each step: call its task with the definition's retries/timeout, record what it returned
(or what its error carried), apply the error policy, and pause where a human is needed —
a ``manual`` error, an approval before reset / database submission (unless pre-approved), a
review point after a step (``pause_after``). Step 8 expands into its run range, then per
part a dry run, the approval and the real submission.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prefect.logging import get_run_logger

from flows import recording
from flows.definitions import DefinitionError, StepDefinition, WorkflowDefinition
from flows.naming import waiting_for
from flows.operator import (
    Answer,
    ApprovalDecision,
    GateDecision,
    IstDecision,
    OperatorAbort,
    OperatorDecision,
    OutageDecision,
    RetryDecision,
    ReviewDecision,
    ask,
    pause_key,
    run_list,
    who,
)
from flows.policy import Reaction, reaction, task_options
from flows.recording import RunRecord
from flows.registry import step_task
from flows.verification import Verification, verify_date
from steps.errors import REQUIRED_DOWNLOAD_CODES
from steps.remote.errors import RemoteError
from steps.results import StepError, StepResult

# Errors with nothing to go on from: a required report is missing (the gate would stop at it
# anyway), the date has no raw data (code 70), or an input is invalid (20, 21, 22).
NO_CONTINUE_CODES = frozenset(REQUIRED_DOWNLOAD_CODES) | {20, 21, 22, 70}
IST_TASK, IST_ANOMALY_CODE = "step1_3", 1302


class StepFailed(Exception):
    """A step failed for good (retries exhausted, or an error no one can decide on)."""


class Outcome(StrEnum):
    DONE = "success"
    WARNED = "warning"  # failed with a continue code, or an operator chose to go on
    SKIPPED = "skipped"
    EXITED = "exit"


@dataclass(frozen=True)
class RunOptions:
    """The flow parameters the steps see (already validated against the definition)."""

    date: str | None
    round: str
    site: str
    run_key: str
    max_wait_minutes: float | None = None
    poll_seconds: float | None = None
    submit_job: bool = True
    check_ist: bool = True
    approve_reset: bool = False
    approve_db_submit: bool = False
    approved_by: str | None = None
    operator_timeout_hours: float = 24.0
    # step 8 only: a part of interval.txt's range (default: the whole file)
    run_from: int | None = None
    run_to: int | None = None


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
            clean = self.gate(step) if step.approval == "reset" else True
            by = self.approval(
                step,
                key=pause_key(step.id, "approve"),
                what=_APPROVAL_TEXT[step.approval],
                details=self.overwrite_notice() if step.approval == "reset" else "",
                pre_ok=clean,
            )
            if by is None:
                recording.record_skipped(self.rec, step, "skipped by the operator")
                return Outcome.SKIPPED
        outcome, _ = self.call(step, step.tasks[0], {"approved_by": by} if by else {})
        return outcome

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
                info = exc.result.error
                if task_name == IST_TASK and info is not None and info.code == IST_ANOMALY_CODE:
                    choice = self.ist_decision(step, exc, attempt)
                    if choice is not None:
                        overrides = choice
                    continue
                answer = self.manual(step, task_name, exc, attempt)
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

    # ----------------------------------------------------------------- humans
    def manual(self, step: StepDefinition, task_name: str, exc: StepError, attempt: int) -> str:
        """Pause for an operator's decision on a manual error; returns continue or retry."""
        info = exc.result.error
        code = f"{info.code} {info.name}" if info else "?"
        self.log.warning("step %s needs an operator: [%s] %s", step.label, code, exc.result.message)
        # a required report that did not download, a date without raw data or a bad input
        # cannot be accepted and passed over: only retry (after fixing the cause) or abort
        required = info is not None and info.code in NO_CONTINUE_CODES
        description = (
            f"## Step {exc.result.step or step.label} ({task_name}) needs a decision\n\n"
            f"**[{code}]** {exc.result.message}\n\n"
            + _facts(exc.result)
            + (
                ""
                if required
                else "\n\n- **continue**: accept and go on"
                + (
                    f" (the step runs again with {step.continue_with})"
                    if step.continue_with
                    else ""
                )
            )
            + "\n- **retry**: run the step again (after fixing the cause)"
            + "\n- **abort**: stop this run (it ends Cancelled)\n"
        )
        model: type[OperatorDecision] | type[RetryDecision] = (
            RetryDecision if required else OperatorDecision
        )
        answer = self._ask(
            model, key=pause_key(task_name, "manual", attempt), description=description
        )
        by = who(answer.name)
        recording.record_decision(
            self.rec,
            step,
            kind="manual",
            decision=answer.action,
            decided_by=by,
            note=answer.note,
            task_name=task_name,
            error_code=info.code if info else None,
        )
        self.log.info("operator %s chose %s for step %s", by, answer.action, step.label)
        if answer.action == "abort":
            raise OperatorAbort(
                f"aborted by {by} at step {step.label} ({task_name}) after [{code}]"
                + (f": {answer.note}" if answer.note else "")
            )
        return answer.action

    def _ask(self, model: type[Answer], *, key: str, description: str) -> Answer:
        """Pause for ``model``'s answer once every artifact so far is visible beside the form."""
        recording.flush(self.rec)
        return ask(
            model,
            key=key,
            description=description,
            timeout_hours=self.o.operator_timeout_hours,
            waits_for=waiting_for(key, self.definition.steps),
        )

    def approval(
        self, step: StepDefinition, *, key: str, what: str, details: str = "", pre_ok: bool = True
    ) -> str | None:
        """Who approved ``step`` (pre-approval parameter or operator); None when skipped.

        A pre-approval covers only the normal case (``pre_ok``): after a gate that needed a
        person, or anything unusual the caller found, the operator is asked all the same.
        """
        pre = self.o.approve_reset if step.approval == "reset" else self.o.approve_db_submit
        if pre and not pre_ok:
            self.log.warning("step %s: the pre-approval does not cover this case", step.label)
        if pre and pre_ok:
            if details:  # pre-approved: what it overwrites is said before it happens
                plain = " ".join(details.replace("**", "").replace("`", "").split())
                self.log.warning("step %s pre-approved; %s", step.label, plain.lstrip("# "))
            by = who(self.o.approved_by)
            recording.record_decision(
                self.rec,
                step,
                kind="pre-approval",
                decision="approve",
                decided_by=by,
                note=f"{key}: parameter approve_{step.approval}",
                task_name=None,
            )
            self.log.info("step %s pre-approved by %s", step.label, by)
            return by
        description = f"## Approval needed: {what}\n\n{details}" + self._pdf_list()
        answer = self._ask(ApprovalDecision, key=key, description=description)
        by = who(answer.name)
        recording.record_decision(
            self.rec,
            step,
            kind="approval",
            decision=answer.decision,
            decided_by=by,
            note=answer.note,
        )
        self.log.info("operator %s chose %s for %s", by, answer.decision, key)
        if answer.decision == "abort":
            raise OperatorAbort(
                f"aborted by {by} at the approval of step {step.label} ({key})"
                + (f": {answer.note}" if answer.note else "")
            )
        return by if answer.decision == "approve" else None

    def overwrite_notice(self) -> str:
        """What the reset will overwrite, for the approval text (empty: nothing known).

        Today's snapshots come from a read-only probe of the site (the one step 7 runs
        first); what earlier runs did to the date comes from the outputs store.
        """
        from steps.runs_dates import DateUnavailable
        from steps.session import open_site
        from steps.step7_reset import reset_preview
        from store import date_guard

        assert self.o.date is not None
        lines: list[str] = []
        try:
            preview = reset_preview(open_site(self.o.site), date=self.o.date, round=self.o.round)
        except (RemoteError, DateUnavailable, OSError, ValueError, LookupError) as exc:
            lines.append(f"- today's snapshots could not be checked: {type(exc).__name__}")
        else:
            if preview["snapshots"]:
                lines.append(
                    "- **reset.sh ran already today: it will overwrite** today's snapshot "
                    + ", ".join(f"`{s}`" for s in preview["snapshots"])
                )
            if preview["working_files"]:
                lines.append(
                    f"- it archives {preview['working_files']} working files of {self.o.date}"
                )
        for done in date_guard.history(self.o.round, self.o.date, self.o.site):
            lines.append(f"- this date was already {done}: that is overwritten")
        return ("### What the reset overwrites\n\n" + "\n".join(lines) + "\n") if lines else ""

    def gate(self, step: StepDefinition) -> bool:
        """Before the reset: the date must be verified, or a person decides knowingly.

        Returns True when nothing was missing (a pre-approval then applies), False when a
        person accepted missing items (the reset is then asked for explicitly).
        """
        from store import dates as date_store

        assert self.o.date is not None
        attempt = 0
        while True:
            v = verify_date(
                self.definition, round=self.o.round, date=self.o.date, flow_run_id=self.o.run_key
            )
            self.record_verification(v, "running")
            if v.ok:
                self.log.info("date %s verified before step %s", self.o.date, step.label)
                return attempt == 0
            attempt += 1
            self.log.warning(
                "date %s is not verified before step %s: %s",
                self.o.date,
                step.label,
                "; ".join(v.missing),
            )
            answer = self._ask(
                GateDecision,
                key=pause_key(step.id, "verify", attempt),
                description=(
                    f"## Step {step.label} waits: date {self.o.date} is not verified\n\n"
                    "Nothing irreversible runs until every item below is fixed, or you accept "
                    f"it by name:\n\n{v.as_markdown()}\n\n"
                    f"Runs of the date: {v.runs}; excluded: {v.excluded_runs}\n\n"
                    "- **accept**: go on without the missing items (recorded with your name; "
                    "the reset is then asked for explicitly)\n"
                    "- **recheck**: check again after fixing the cause\n"
                    "- **abort**: stop this run (it ends Cancelled)\n\n"
                    "Runs listed under *exclude_runs* are taken out of the round's constants."
                )
                + self._pdf_list(),
            )
            by = who(answer.name)
            excluded = run_list(answer.exclude_runs)
            unknown = sorted(set(excluded) - set(v.runs))
            recording.record_decision(
                self.rec,
                step,
                kind="gate",
                decision=answer.decision,
                decided_by=by,
                note=(
                    f"missing: {'; '.join(v.missing)}"
                    + (f" | excluded runs: {excluded}" if excluded else "")
                    + (f" | {answer.note}" if answer.note else "")
                ),
            )
            if unknown:
                self.log.warning("runs %s are not runs of %s: not excluded", unknown, self.o.date)
                excluded = [r for r in excluded if r not in unknown]
            if excluded:
                date_store.exclude_runs(
                    self.o.round,
                    excluded,
                    date=self.o.date,
                    reason="gate",
                    decided_by=by,
                    note=answer.note,
                    flow_run_id=self.o.run_key,
                )
            if answer.decision == "abort":
                raise OperatorAbort(
                    f"aborted by {by} at the verification before step {step.label}"
                    + (f": {answer.note}" if answer.note else "")
                )
            if answer.decision == "accept":
                v = verify_date(
                    self.definition,
                    round=self.o.round,
                    date=self.o.date,
                    flow_run_id=self.o.run_key,
                )
                self.record_verification(v, "running", accepted_by=by)
                self.log.warning("%s accepted the missing items of %s", by, self.o.date)
                return False

    def record_verification(
        self, v: Verification, status: str, accepted_by: str | None = None
    ) -> None:
        """Write what the check found into the date's record."""
        from store import dates as date_store

        date_store.mark_date(
            self.o.round,
            v.date,
            status,
            flow_run_id=self.o.run_key,
            workflow=f"{self.definition.name}@{self.definition.version}",
            runs=v.runs,
            registered_runs=v.registered_runs,
            missing=v.missing,
            accepted=v.missing if accepted_by else None,
            accepted_by=accepted_by,
        )

    def ist_decision(
        self, step: StepDefinition, exc: StepError, attempt: int
    ) -> dict[str, Any] | None:
        """Step 1.3's IST anomaly: a person registers or excludes each run; None = retry."""
        from store import dates as date_store

        data = exc.result.data
        invalid = sorted(int(r) for r in data.get("invalid_runs") or [])
        values = data.get("ist") or {}
        rows = "\n".join(
            f"| {r} | {values.get(str(r), {}).get('interval_From_DB')} | "
            f"{values.get(str(r), {}).get('interval_before_sorting')} | "
            f"{values.get(str(r), {}).get('interval_after_sorting')} |"
            for r in invalid
        )
        problem = ""
        n = attempt
        while True:
            answer = self._ask(
                IstDecision,
                key=pause_key(IST_TASK, "ist", n),
                description=(
                    f"## Step {step.label}: IST values other than 15000000\n\n{problem}"
                    "| run | From_DB | before sorting | after sorting |\n|---|---|---|---|\n"
                    f"{rows}\n\nPut every run above in exactly one list: **register_runs** "
                    "(written to interval.txt as 15000000) or **exclude_runs** (left out of "
                    "interval.txt and of the round's constants). Or **retry** / **abort**."
                ),
            )
            by = who(answer.name)
            if answer.action == "abort":
                recording.record_decision(
                    self.rec, step, kind="ist", decision="abort", decided_by=by, note=answer.note
                )
                raise OperatorAbort(
                    f"aborted by {by} at step {step.label} (IST values)"
                    + (f": {answer.note}" if answer.note else "")
                )
            if answer.action == "retry":
                recording.record_decision(
                    self.rec, step, kind="ist", decision="retry", decided_by=by, note=answer.note
                )
                return None
            register, exclude = run_list(answer.register_runs), run_list(answer.exclude_runs)
            both = sorted(set(register) & set(exclude))
            left = sorted(set(invalid) - set(register) - set(exclude))
            extra = sorted((set(register) | set(exclude)) - set(invalid))
            if both or left or extra:
                problem = (
                    "**Your last answer was not applied:** "
                    + "; ".join(
                        t
                        for t in (
                            f"in both lists: {both}" if both else "",
                            f"in neither list: {left}" if left else "",
                            f"not runs with an anomaly: {extra}" if extra else "",
                        )
                        if t
                    )
                    + "\n\n"
                )
                n += 100  # a new pause key: the earlier answer stays recorded as given
                continue
            for decision, runs in (("register", register), ("exclude", exclude)):
                if runs:
                    recording.record_decision(
                        self.rec,
                        step,
                        kind="ist",
                        decision=decision,
                        decided_by=by,
                        note=",".join(str(r) for r in runs)
                        + (f": {answer.note}" if answer.note else ""),
                        task_name=IST_TASK,
                        error_code=IST_ANOMALY_CODE,
                    )
            if exclude:
                date_store.exclude_runs(
                    self.o.round,
                    exclude,
                    date=self.o.date,
                    reason="ist",
                    decided_by=by,
                    note=answer.note,
                    flow_run_id=self.o.run_key,
                )
            self.log.info("%s registers %s and excludes %s at step 1.3", by, register, exclude)
            return {"check_ist": False, "exclude_runs": exclude}

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
        answer = self._ask(
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
        by = who(answer.name)
        recording.record_decision(
            self.rec,
            step,
            kind="outage",
            decision=answer.action,
            decided_by=by,
            note=f"{type(exc).__name__}: {str(exc)[:300]}"
            + (f" | {answer.note}" if answer.note else ""),
            task_name=task_name,
        )
        if answer.action == "abort":
            raise OperatorAbort(
                f"aborted by {by} at step {step.label} after losing the site"
                + (f": {answer.note}" if answer.note else "")
            )

    def review(self, step: StepDefinition) -> None:
        answer = self._ask(
            ReviewDecision,
            key=pause_key(step.id, "review"),
            description=f"## Review after step {step.label}: {step.title}\n" + self._pdf_list(),
        )
        by = who(answer.name)
        recording.record_decision(
            self.rec, step, kind="review", decision=answer.action, decided_by=by, note=answer.note
        )
        if answer.action == "abort":
            raise OperatorAbort(
                f"aborted by {by} at the review after step {step.label}"
                + (f": {answer.note}" if answer.note else "")
            )

    def _pdf_list(self) -> str:
        """The run's reports as signed browser links (the approval says: review them first)."""
        return recording.reports_markdown(self.rec)

    # ----------------------------------------------------------------- step 8
    def database(self, step: StepDefinition) -> Outcome:
        """Step 8 (``flows.submission``): range, then per part dry run, approval, submission."""
        from flows.submission import Submitter

        return Submitter(self, step).run()


_APPROVAL_TEXT = {
    "reset": (
        "step 7 runs `reset.sh`, which archives this date's working files and snapshots the "
        "cumulative files (shared by the whole round). Review the reports first."
    ),
    "db_submit": "the database submission",
}


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
