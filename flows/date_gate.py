"""The gate before the reset: the date must be verified, or a person decides knowingly.

Nothing irreversible runs on a date with missing outputs unless someone accepts the missing
items by name; the answer may also take runs out of the round's constants.
"""

from __future__ import annotations

from flows.date_record import exclude_runs, record_verification
from flows.decisions import Decisions
from flows.definitions import StepDefinition, WorkflowDefinition
from flows.operator import GateDecision, pause_key, run_list
from flows.run_options import RunOptions
from flows.verification import Verification, verify_date


def gate(
    decisions: Decisions, definition: WorkflowDefinition, o: RunOptions, step: StepDefinition
) -> bool:
    """Check the date until it is verified, or a person accepts or aborts.

    Returns True when nothing was missing (a pre-approval then applies), False when a
    person accepted missing items (the reset is then asked for explicitly).
    """
    assert o.date is not None
    date, log = o.date, decisions.log

    def verified(accepted_by: str | None = None) -> Verification:
        v = verify_date(definition, round=o.round, date=date, flow_run_id=o.run_key)
        record_verification(definition, o, v, "running", accepted_by=accepted_by)
        return v

    attempt = 0
    while True:
        v = verified()
        if v.ok:
            log.info("date %s verified before step %s", date, step.label)
            return attempt == 0
        attempt += 1
        log.warning(
            "date %s is not verified before step %s: %s", date, step.label, "; ".join(v.missing)
        )
        got = decisions.hear(
            GateDecision,
            key=pause_key(step.id, "verify", attempt),
            description=_gate_text(step, date, v) + decisions.reports(),
        )
        excluded = run_list(got.answer.exclude_runs)
        unknown = sorted(set(excluded) - set(v.runs))
        decisions.record(
            step,
            got,
            "gate",
            note=got.noted(
                f"missing: {'; '.join(v.missing)}"
                + (f" | excluded runs: {excluded}" if excluded else "")
            ),
        )
        if unknown:
            log.warning("runs %s are not runs of %s: not excluded", unknown, date)
            excluded = [r for r in excluded if r not in unknown]
        if excluded:
            exclude_runs(o, excluded, reason="gate", by=got.by, note=got.note)
        got.stop_if_aborted(f"at the verification before step {step.label}")
        if got.choice == "accept":
            verified(accepted_by=got.by)
            log.warning("%s accepted the missing items of %s", got.by, date)
            return False


def _gate_text(step: StepDefinition, date: str, v: Verification) -> str:
    """The gate's form: what is missing, and what each answer does."""
    return (
        f"## Step {step.label} waits: date {date} is not verified\n\n"
        "Nothing irreversible runs until every item below is fixed, or you accept "
        f"it by name:\n\n{v.as_markdown()}\n\n"
        f"Runs of the date: {v.runs}; excluded: {v.excluded_runs}\n\n"
        "- **accept**: go on without the missing items (recorded with your name; "
        "the reset is then asked for explicitly)\n"
        "- **recheck**: check again after fixing the cause\n"
        "- **abort**: stop this run (it ends Cancelled)\n\n"
        "Runs listed under *exclude_runs* are taken out of the round's constants."
    )
