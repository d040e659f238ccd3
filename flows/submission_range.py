"""Step 8's run range and its dates: only runs of verified dates go to the database.

The range comes from ``interval.txt`` (the ``step8_range`` task, ``steps/step8_range.py``);
an operator may narrow it (``run_from``/``run_to`` of the flow). Every run of it must belong
to a verified date or have been submitted before; for any other run a person decides: set
it aside (its lines leave the cumulative files, ``steps/step8_exclusion.py``), include it
anyway, or stop. Each decision is recorded, and a range a person had to look at is never the
normal case (no pre-approval applies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefect.cache_policies import NO_CACHE

from flows import recording
from flows.operator import pause_key, who
from flows.policy import task_options
from flows.registry import step_task
from flows.submission_forms import RangeDecision
from steps.results import StepResult
from steps.step8_parts import PARTS
from store import dates as date_store
from store import ledger

if TYPE_CHECKING:
    from flows.submission import Submitter

SET_ASIDE_TASK = "step8_set_aside"


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


def runs_of(rng: StepResult) -> list[int]:
    """The runs of a ``step8_range`` result, in file order."""
    return [int(r) for r in rng.data.get("runs") or []]


def narrowed(rng: StepResult, lo: int | None, hi: int | None) -> StepResult:
    """The range asked for (``run_from``/``run_to``), checked against interval.txt."""
    if lo is None and hi is None:
        return rng
    runs = runs_of(rng)
    lo = rng.data["run_from"] if lo is None else lo
    hi = rng.data["run_to"] if hi is None else hi
    inside = [r for r in runs if lo <= r <= hi]
    if lo > hi or not inside or lo not in runs or hi not in runs:
        raise ValueError(
            f"run range {lo}–{hi} must start and end at runs of interval.txt "
            f"({rng.data['run_from']}–{rng.data['run_to']}, {len(runs)} runs)"
        )
    data = {**rng.data, "run_from": lo, "run_to": hi, "runs": inside}
    return rng.model_copy(update={"data": data})


def check_dates(sub: Submitter, rng: StepResult) -> StepResult:
    """Every run of the range from a verified date, or a person decided."""
    o = sub.o
    attempt = 0
    while True:
        check = check_range(o.round, runs_of(rng))
        recording.record_range_check(sub.p.rec, check.by_date, check.problems)
        if not check.problems:
            return rng
        attempt += 1
        sub.normal = False
        answer = sub.p._ask(
            RangeDecision,
            key=pause_key("step8", "range", attempt),
            description=(
                f"## The run range {rng.data['run_from']}–{rng.data['run_to']} of "
                f"{o.round} holds runs that are not from a verified date\n\n"
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
        about = f"runs {bad}: {check.problem_text()}"
        at = "at the run range of the submission"
        sub.decided("range", answer.decision, by, answer.note, about=about, at=at, sep=" | ")
        if answer.decision == "include":
            sub.log.warning("%s includes runs %s of unverified dates", by, bad)
            return rng
        done = set_aside(sub, bad, by, answer.note)
        date_store.exclude_runs(
            o.round,
            bad,
            date=None,
            reason="set-aside",
            decided_by=by,
            note=answer.note,
            flow_run_id=o.run_key,
            actions=done,
        )
        # read again, past the task cache (same inputs, new file contents)
        task = step_task("step8_range").with_options(
            cache_policy=NO_CACHE, **task_options(sub.step, None, "step8_range")
        )
        rng = task(date=o.date, round=o.round, run_key=o.run_key, site=o.site)


def set_aside(sub: Submitter, runs: list[int], by: str, note: str) -> dict[str, object]:
    """Remove the runs' lines from the cumulative files, their constants to excluded/."""
    task = step_task(SET_ASIDE_TASK).with_options(**task_options(sub.step, None, SET_ASIDE_TASK))
    result: StepResult = task(
        round=sub.o.round,
        runs=runs,
        run_key=sub.o.run_key,
        site=sub.o.site,
        reason_tag="setaside",
    )
    sub.log.warning("runs %s set aside by %s: %s", runs, by, result.message)
    return dict(result.data)
