"""Step 8, the database submission of a round's constants, as the flow runs it.

Reads like the procedure an operator follows:
1. the run range (``interval.txt``) and which dates its runs belong to: every run must belong
   to a verified date, be already submitted, or a person decides (set aside or include);
2. earlier attempts whose outcome is unknown are settled by a person first;
3. per part 8.1 – 8.3: the dry run, the approval (showing the dry run and what is new since
   the last successful submission; a range already submitted needs an explicit "submit
   again" naming that submission), the ledger row, the real submission, the row settled.

A real submission that failed, lost its exit status or its connection is never started again
by a retry: the operator decides, with the ledger row and the remote output in front of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from flows import recording
from flows.definitions import StepDefinition
from flows.operator import OperatorAbort, pause_key, who
from flows.policy import task_options
from flows.registry import step_task
from steps.remote.errors import RemoteError
from steps.results import StepError, StepResult
from steps.step8_database import LOST_CODE, PARTS, submission_key
from store import dates as date_store
from store import ledger
from store.models import Submission

if TYPE_CHECKING:
    from flows.procedure import Outcome, Procedure

SET_ASIDE_TASK = "step8_set_aside"


class RangeDecision(RunInput):
    """Runs of the range are not from verified dates: a person decides what happens."""

    decision: Literal["set_aside", "include", "abort"] = Field(
        description=(
            "set_aside: remove these runs' lines from the round's cumulative files and set "
            "their constant files aside (recorded); include: submit them anyway (recorded); "
            "abort: stop"
        )
    )
    name: str = Field(min_length=1, max_length=64, description="Who decides (recorded)")
    note: str = Field("", max_length=2000, description="Why (recorded)")


class SettleDecision(RunInput):
    """An earlier real submission ended without a known outcome."""

    outcome: Literal["submitted", "failed", "abort"] = Field(
        description=(
            "submitted: you checked the database and the rows are there; failed: you checked "
            "and they are not (a new submission may follow); abort: stop and check first"
        )
    )
    submission_id: int = Field(description="The ledger row you checked (#id shown above)")
    name: str = Field(min_length=1, max_length=64, description="Who checked (recorded)")
    note: str = Field("", max_length=2000, description="What you found (recorded)")


class ResubmitDecision(RunInput):
    """A real submission failed, or the range was submitted before: submit (again) or not."""

    decision: Literal["submit_again", "skip", "abort"] = Field(
        description="submit_again: start a new real submission; skip: not this part; abort"
    )
    earlier_submission: int = Field(description="The ledger row this decision is about (#id)")
    name: str = Field(min_length=1, max_length=64, description="Who decides (recorded)")
    note: str = Field("", max_length=2000, description="Why (recorded)")


@dataclass
class RangeCheck:
    """Which runs of the range may go to the database without a person's decision."""

    runs: list[int]
    by_date: dict[str, list[int]] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)  # run -> why it needs a decision

    def problem_text(self) -> str:
        groups: dict[str, list[int]] = {}
        for run, why in self.problems.items():
            groups.setdefault(why, []).append(run)
        return "\n".join(f"- {why}: runs {sorted(runs)}" for why, runs in groups.items())


def check_range(round: str, runs: list[int]) -> RangeCheck:
    """Map the runs to their dates and say which ones are not from a verified date."""
    owner: dict[int, tuple[str, str]] = {}
    for rec in date_store.date_records(round):
        for run in set(rec.runs) | set(rec.registered_runs):
            owner[int(run)] = (rec.date, rec.status)
    excluded = date_store.excluded_runs(round)
    submitted = set().union(*(ledger.submitted_runs(round, p) for p in PARTS))
    check = RangeCheck(runs=runs)
    for run in runs:
        date, status = owner.get(run, ("", ""))
        if date:
            check.by_date.setdefault(date, []).append(run)
        if run in excluded:
            check.problems[run] = "excluded by a person but still in interval.txt"
        elif not date:
            if run not in submitted:
                check.problems[run] = "no processed date of this round is known to hold it"
        elif status in date_store.NOT_SUBMITTABLE:
            check.problems[run] = f"date {date} is {status}"
    return check


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _row_text(row: Submission) -> str:
    return (
        f"#{row.id}: {row.part} runs {row.run_from}–{row.run_to}, flow run `{row.flow_run_id}`, "
        f"approved by {row.approved_by or '?'}, started {row.started_at:%Y-%m-%d %H:%M:%S}, "
        f"exit status {row.exit_status}, outcome **{row.outcome}**"
    )


def _what_to_check(part: str, row: Submission) -> str:
    table = PARTS[part][0]
    return (
        f"Check in the offline database whether the {table} constants of runs "
        f"{row.run_from}–{row.run_to} are there (and how many rows), before you answer."
    )


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
        from flows.procedure import Outcome

        outcome, rng = self.p.call(self.step, "step8_range", {})
        if rng is None:
            return outcome
        rng = self.check_dates(self.narrowed(rng))
        bounds = {"run_from": rng.data["run_from"], "run_to": rng.data["run_to"]}
        runs = [int(r) for r in rng.data.get("runs") or []]
        self.settle_unknown()
        worst = Outcome.DONE
        for part in ("8.1", "8.2", "8.3"):
            result = self.part(part, bounds, runs)
            if result is None:
                self.log.warning("%s and the following parts skipped by the operator", part)
                for later in [p for p in ("8.1", "8.2", "8.3") if p >= part]:
                    recording.record_skipped(
                        self.p.rec,
                        self.step.model_copy(update={"tasks": [_task(later, "submit")]}),
                        "skipped by the operator",
                    )
                return Outcome.SKIPPED
            if result != Outcome.DONE:
                worst = result
        return worst

    # ------------------------------------------------------------------ the range
    def narrowed(self, rng: StepResult) -> StepResult:
        """The range asked for (``run_from``/``run_to``), checked against interval.txt."""
        lo, hi = self.o.run_from, self.o.run_to
        if lo is None and hi is None:
            return rng
        runs = [int(r) for r in rng.data.get("runs") or []]
        lo = rng.data["run_from"] if lo is None else lo
        hi = rng.data["run_to"] if hi is None else hi
        inside = [r for r in runs if lo <= r <= hi]
        if lo > hi or not inside or lo not in runs or hi not in runs:
            raise ValueError(
                f"run range {lo}–{hi} must start and end at runs of interval.txt "
                f"({rng.data['run_from']}–{rng.data['run_to']}, {len(runs)} runs)"
            )
        self.normal = False  # a hand-picked range is never the normal case
        data = {**rng.data, "run_from": lo, "run_to": hi, "runs": inside}
        return rng.model_copy(update={"data": data})

    def check_dates(self, rng: StepResult) -> StepResult:
        """Every run of the range from a verified date, or a person decided."""
        attempt = 0
        while True:
            runs = [int(r) for r in rng.data.get("runs") or []]
            check = check_range(self.o.round, runs)
            recording.record_range_check(self.p.rec, check.by_date, check.problems)
            if not check.problems:
                return rng
            attempt += 1
            self.normal = False
            answer = self.p._ask(
                RangeDecision,
                key=pause_key("step8", "range", attempt),
                description=(
                    f"## The run range {rng.data['run_from']}–{rng.data['run_to']} of "
                    f"{self.o.round} holds runs that are not from a verified date\n\n"
                    f"{check.problem_text()}\n\nDates of the range: "
                    + ", ".join(f"{d} ({len(r)} runs)" for d, r in sorted(check.by_date.items()))
                    + "\n\n- **set_aside**: their lines leave interval.txt, window.dat and "
                    "ets_cut.txt (backups kept) and their constant files move to `excluded/`\n"
                    "- **include**: submit them all the same (recorded with your name)\n"
                    "- **abort**: stop; nothing is submitted"
                ),
            )
            by = who(answer.name)
            bad = sorted(check.problems)
            recording.record_decision(
                self.p.rec,
                self.step,
                kind="range",
                decision=answer.decision,
                decided_by=by,
                note=f"runs {bad}: {check.problem_text()}"
                + (f" | {answer.note}" if answer.note else ""),
            )
            if answer.decision == "abort":
                raise OperatorAbort(
                    f"aborted by {by} at the run range of the submission"
                    + (f": {answer.note}" if answer.note else "")
                )
            if answer.decision == "include":
                self.log.warning("%s includes runs %s of unverified dates", by, bad)
                return rng
            done = self.set_aside(bad, by, answer.note)
            date_store.exclude_runs(
                self.o.round,
                bad,
                date=None,
                reason="set-aside",
                decided_by=by,
                note=answer.note,
                flow_run_id=self.o.run_key,
                actions=done,
            )
            # read again, past the task cache (same inputs, new file contents)
            task = step_task("step8_range").with_options(
                cache_policy=NO_CACHE, **task_options(self.step, None, "step8_range")
            )
            rng = task(
                date=self.o.date, round=self.o.round, run_key=self.o.run_key, site=self.o.site
            )

    def set_aside(self, runs: list[int], by: str, note: str) -> dict[str, object]:
        """Remove the runs' lines from the cumulative files, their constants to excluded/."""
        task = step_task(SET_ASIDE_TASK).with_options(
            **task_options(self.step, None, SET_ASIDE_TASK)
        )
        result: StepResult = task(
            round=self.o.round,
            runs=runs,
            run_key=self.o.run_key,
            site=self.o.site,
            reason_tag="setaside",
        )
        self.log.warning("runs %s set aside by %s: %s", runs, by, result.message)
        return dict(result.data)

    # ------------------------------------------------------------------ the ledger
    def settle_unknown(self) -> None:
        """Earlier attempts of this round with no known outcome: a person checks first."""
        for row in ledger.submissions(self.o.round):
            if row.outcome != "unknown" or row.flow_run_id == self.o.run_key:
                continue
            self.normal = False
            self.ask_settle(row, reason="an earlier submission ended without a known outcome")

    def ask_settle(self, row: Submission, reason: str) -> str:
        answer = self.p._ask(
            SettleDecision,
            key=pause_key("step8", "settle", row.id or 0),
            description=(
                f"## {reason}\n\n{_row_text(row)}\n\nRemote output (tail):\n\n```\n"
                f"{row.output[-3000:]}\n```\n\n{_what_to_check(row.part, row)}"
            ),
        )
        by = who(answer.name)
        if answer.submission_id != row.id:
            raise OperatorAbort(
                f"{by} answered about submission #{answer.submission_id}, not #{row.id}: "
                "nothing was decided; run the submission again to answer"
            )
        recording.record_decision(
            self.p.rec,
            self.step,
            kind="settle",
            decision=answer.outcome,
            decided_by=by,
            note=f"submission #{row.id}" + (f": {answer.note}" if answer.note else ""),
        )
        if answer.outcome == "abort":
            raise OperatorAbort(
                f"aborted by {by} while settling submission #{row.id}"
                + (f": {answer.note}" if answer.note else "")
            )
        assert row.id is not None
        ledger.settle(
            row.id, answer.outcome, exit_status=row.exit_status, decided_by=by, note=answer.note
        )
        return answer.outcome

    # ------------------------------------------------------------------ one part
    def part(self, part: str, bounds: dict[str, int], runs: list[int]) -> Outcome | None:

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
            by = self._resubmit_answer(answer, earlier, part)
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

    def _resubmit_answer(self, answer: ResubmitDecision, earlier: int, part: str) -> str | None:
        by = who(answer.name)
        recording.record_decision(
            self.p.rec,
            self.step,
            kind="resubmit",
            decision=answer.decision,
            decided_by=by,
            note=f"{part}, about submission #{earlier}"
            + (f": {answer.note}" if answer.note else ""),
        )
        if answer.decision == "abort":
            raise OperatorAbort(
                f"aborted by {by} at {part}" + (f": {answer.note}" if answer.note else "")
            )
        if answer.decision == "skip":
            return None
        if answer.earlier_submission != earlier:
            raise OperatorAbort(
                f"{by} chose to submit again but named submission #{answer.earlier_submission}, "
                f"not #{earlier}: nothing was submitted"
            )
        return by

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
            who_ = self._ask_failed(part, last, "the last attempt of this run failed")
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
                if lost and self.ask_settle(row, reason=f"{part}: {exc.result.message}") == (
                    "submitted"
                ):
                    return Outcome.WARNED
                who_ = self._ask_failed(part, row, exc.result.message)
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
                    details=f"Ledger: {_row_text(row)}\n\n{_what_to_check(part, row)}",
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

    def _ask_failed(self, part: str, row: Submission, message: str) -> str | None:
        """A failed real submission: who chose to submit again (naming it), or None (skip)."""
        assert row.id is not None
        answer = self.p._ask(
            ResubmitDecision,
            key=pause_key("step8", part, "failed", row.id),
            description=(
                f"## {part}: the real submission failed\n\n{_row_text(row)}\n\n"
                f"`{message[:500]}`\n\nRemote output (tail):\n\n```\n{row.output[-3000:]}\n```"
                f"\n\n{_what_to_check(part, row)}\n\nIt is not started again unless you "
                f"answer **submit_again** with earlier_submission = {row.id}."
            ),
        )
        return self._resubmit_answer(answer, row.id, part)


def _task(part: str, phase: str) -> str:
    return f"step8_{part[-1]}_{phase}"
