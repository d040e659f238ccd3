"""Step 8, the database submission of a round's constants, as the flow runs it.

Reads like the procedure an operator follows:
1. the run range (``interval.txt``) and which dates its runs belong to: every run must belong
   to a verified date, be already submitted, or a person decides (set aside or include;
   ``flows/submission_range.py``);
2. earlier attempts whose outcome is unknown are settled by a person first
   (``flows/submission_decisions.py``);
3. per part 8.1 – 8.3: the dry run, the approval (showing the dry run and what is new since
   the last successful submission; a range already submitted needs an explicit "submit
   again" naming that submission), the ledger row, the real submission, the row settled.

A real submission that failed, lost its exit status or its connection is never started again
by a retry: the operator decides, with the ledger row and the remote output in front of them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from flows import recording
from flows.definitions import StepDefinition
from flows.operator import OperatorAbort, pause_key
from flows.policy import task_options
from flows.registry import step_task
from flows.submission_decisions import (
    ask_failed,
    ask_settle,
    resubmit_answer,
    row_text,
    settle_unknown,
    what_to_check,
)
from flows.submission_forms import ResubmitDecision, noted
from flows.submission_range import check_dates, check_range, narrowed, runs_of
from steps.remote.errors import RemoteError
from steps.results import StepError, StepResult
from steps.step8_parts import submission_key
from steps.step8_substeps import LOST_CODE
from store import ledger

if TYPE_CHECKING:
    from flows.procedure import Outcome, Procedure

PARTS_IN_ORDER = ("8.1", "8.2", "8.3")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Submitter:
    """Step 8 of one flow run, with the procedure's tools (tasks, pauses, records)."""

    def __init__(self, proc: Procedure, step: StepDefinition) -> None:
        self.p = proc
        self.step = step
        self.o = proc.o
        self.log = proc.log
        self.normal = True  # nothing unusual: a pre-approval may apply
        self.outages = 0  # questions asked about lost connections (each its own pause key)

    # ------------------------------------------------------------------ the procedure
    def run(self) -> Outcome:
        """The range and its dates, earlier unknown outcomes settled, then 8.1 – 8.3 in order."""
        from flows.procedure import Outcome

        outcome, rng = self.p.call(self.step, "step8_range", {})
        if rng is None:
            return outcome
        if self.o.run_from is not None or self.o.run_to is not None:
            rng = narrowed(rng, self.o.run_from, self.o.run_to)
            self.normal = False  # a hand-picked range is never the normal case
        rng = check_dates(self, rng)
        bounds = {"run_from": rng.data["run_from"], "run_to": rng.data["run_to"]}
        runs = runs_of(rng)
        settle_unknown(self)
        worst = Outcome.DONE
        for part in PARTS_IN_ORDER:
            result = self.part(part, bounds, runs)
            if result is None:
                self.log.warning("%s and the following parts skipped by the operator", part)
                for later in [p for p in PARTS_IN_ORDER if p >= part]:
                    recording.record_skipped(
                        self.p.rec,
                        self.step.model_copy(update={"tasks": [_task(later, "submit")]}),
                        "skipped by the operator",
                    )
                return Outcome.SKIPPED
            if result != Outcome.DONE:
                worst = result
        return worst

    def decided(
        self, kind: str, decision: str, by: str, note: str, *, about: str, at: str, sep: str = ": "
    ) -> None:
        """Record a person's answer ``about`` something (with their ``note``).

        ``abort`` ends the run: "aborted by <by> <at>: <note>".
        """
        recording.record_decision(
            self.p.rec,
            self.step,
            kind=kind,
            decision=decision,
            decided_by=by,
            note=noted(about, note, sep),
        )
        if decision == "abort":
            raise OperatorAbort(noted(f"aborted by {by} {at}", note))

    # ------------------------------------------------------------------ one part
    def part(self, part: str, bounds: dict[str, int], runs: list[int]) -> Outcome | None:
        """One part: its dry run, a person's approval (or "submit again"), the submission.

        None: the operator skipped it (and the parts after it).
        """
        prepare = _task(part, "prepare")
        outcome, prepared = self.p.call(self.step, prepare, bounds)
        if prepared is None:
            return outcome
        dry = str(prepared.data.get("dry_run_output", "")).strip()
        recording.record_dry_run(self.p.rec, part[-1], bounds, dry)
        carried = [r for r in runs if bounds["run_from"] <= r <= bounds["run_to"]] or runs
        already = ledger.submitted_runs(self.o.round, part)
        new = [r for r in carried if r not in already]
        earlier_ids = sorted({already[r] for r in carried if r in already})
        resubmit_of: int | None = None
        details = (
            f"Dry run (`-sub_switch 0`) output:\n\n```\n{dry[-3000:]}\n```\n\n"
            f"**New since the last successful submission:** {new or 'nothing'}\n\n"
            + (
                f"Already submitted (ledger #{', #'.join(map(str, earlier_ids))}): "
                f"{[r for r in carried if r in already]}\n"
                if earlier_ids
                else ""
            )
        )
        if not new:
            earlier = earlier_ids[-1]
            answer = self.p._ask(
                ResubmitDecision,
                key=pause_key("step8", part, "again", earlier),
                description=(
                    f"## {part}: runs {bounds['run_from']}–{bounds['run_to']} were all "
                    f"submitted before (ledger #{earlier})\n\n{details}\n\nTo submit them "
                    f"again, answer **submit_again** with earlier_submission = {earlier}."
                ),
            )
            by = resubmit_answer(self, answer, earlier, part)
            if by is None:
                return None
            resubmit_of = earlier
        else:
            if earlier_ids:
                self.normal = False
            by_or_none = self.p.approval(
                self.step,
                key=pause_key("step8", "approve", part[-1]),
                what=(
                    f"database submission {part} of runs {bounds['run_from']}–"
                    f"{bounds['run_to']} (irreversible)"
                ),
                details=details,
                pre_ok=self.normal,
            )
            if by_or_none is None:
                return None
            by = by_or_none
        return self.submit(part, bounds, carried, by, _sha(dry), resubmit_of)

    def submit(
        self,
        part: str,
        bounds: dict[str, int],
        runs: list[int],
        by: str,
        dry_sha: str,
        resubmit_of: int | None,
    ) -> Outcome | None:
        """The real submission, its ledger row before and after; failures go to a person."""
        from flows.procedure import Outcome

        mine = [
            r
            for r in ledger.submissions(self.o.round, part, flow_run_id=self.o.run_key)
            if (r.run_from, r.run_to) == (bounds["run_from"], bounds["run_to"])
        ]
        attempt = max(len(mine), 1)
        resubmit_after: str | None = None
        if mine and mine[-1].outcome == "failed":
            # this run's last attempt failed (a resumed run comes back here): ask first
            last = mine[-1]
            who_ = ask_failed(self, part, last, "the last attempt of this run failed")
            if who_ is None:
                return None
            by, resubmit_of, resubmit_after = who_, last.id, last.remote_key
            attempt = len(mine) + 1
        while True:
            key = submission_key(
                self.o.run_key, part, bounds["run_from"], bounds["run_to"], attempt
            )
            dates = sorted({d for d, rs in check_range(self.o.round, runs).by_date.items() if rs})
            row = ledger.open_submission(
                round=self.o.round,
                part=part,
                run_from=bounds["run_from"],
                run_to=bounds["run_to"],
                runs=runs,
                dates=dates,
                flow_run_id=self.o.run_key,
                approved_by=by,
                dry_run_sha256=dry_sha,
                remote_key=key,
                resubmit_of=resubmit_of,
            )
            assert row.id is not None
            if row.outcome == "submitted":
                return Outcome.DONE
            task_name = _task(part, "submit")
            task = step_task(task_name).with_options(**task_options(self.step, None, task_name))
            kw = self.p.kwargs(
                self.step,
                task_name,
                {**bounds, "approved_by": by, "resubmit_after": resubmit_after},
            )
            try:
                result: StepResult = task(**kw)
            except StepError as exc:
                self.p._record(self.step, task_name, exc.result, "failed")
                data = exc.result.data
                lost = exc.result.error is not None and exc.result.error.code == LOST_CODE
                output = f"{data.get('output', '')}\n{data.get('stderr', '')}".strip()
                row = ledger.settle(
                    row.id,
                    "unknown" if lost else "failed",
                    exit_status=data.get("exit_code"),
                    output=output,
                )
                self.log.error("%s: real submission failed: %s", part, exc.result.message)
                if lost and ask_settle(self, row, reason=f"{part}: {exc.result.message}") == (
                    "submitted"
                ):
                    return Outcome.WARNED
                who_ = ask_failed(self, part, row, exc.result.message)
                if who_ is None:
                    return None
                by, resubmit_of, resubmit_after = who_, row.id, row.remote_key
                attempt += 1
                continue
            except (RemoteError, TimeoutError) as exc:
                # the row stays unknown: the command may still be running; retry re-attaches
                self.outages += 1
                self.p.outage(
                    self.step,
                    task_name,
                    exc,
                    self.outages,
                    details=f"Ledger: {row_text(row)}\n\n{what_to_check(part, row)}",
                )
                continue
            self.p._record(self.step, task_name, result, "success")
            ledger.settle(
                row.id,
                "submitted",
                exit_status=0,
                output=str(result.data.get("submit_output", "")),
            )
            self.log.info("%s: submitted runs %s (ledger #%s)", part, bounds, row.id)
            return Outcome.DONE


def _task(part: str, phase: str) -> str:
    return f"step8_{part[-1]}_{phase}"
