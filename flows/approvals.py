"""Approvals of the steps that change shared state: the reset and the database submission.

A person approves by name, or the run's pre-approval parameter does it for the normal case
only. Before the reset the form (or, when pre-approved, the log) says what it overwrites.
"""

from __future__ import annotations

from flows import recording
from flows.decisions import Decisions
from flows.definitions import StepDefinition
from flows.operator import ApprovalDecision, who
from flows.run_options import RunOptions
from steps.remote.errors import RemoteError

APPROVAL_TEXT = {
    "reset": (
        "step 7 runs `reset.sh`, which archives this date's working files and snapshots the "
        "cumulative files (shared by the whole round). Review the reports first."
    ),
    "db_submit": "the database submission",
}


def approval(
    decisions: Decisions,
    o: RunOptions,
    step: StepDefinition,
    *,
    key: str,
    what: str,
    details: str = "",
    pre_ok: bool = True,
) -> str | None:
    """Who approved ``step`` (pre-approval parameter or operator); None when skipped.

    A pre-approval covers only the normal case (``pre_ok``): after a gate that needed a
    person, or anything unusual the caller found, the operator is asked all the same.
    """
    log = decisions.log
    pre = o.approve_reset if step.approval == "reset" else o.approve_db_submit
    if pre and not pre_ok:
        log.warning("step %s: the pre-approval does not cover this case", step.label)
    if pre and pre_ok:
        if details:  # pre-approved: what it overwrites is said before it happens
            plain = " ".join(details.replace("**", "").replace("`", "").split())
            log.warning("step %s pre-approved; %s", step.label, plain.lstrip("# "))
        by = who(o.approved_by)
        recording.record_decision(
            decisions.rec,
            step,
            kind="pre-approval",
            decision="approve",
            decided_by=by,
            note=f"{key}: parameter approve_{step.approval}",
        )
        log.info("step %s pre-approved by %s", step.label, by)
        return by
    got = decisions.decide(
        ApprovalDecision,
        step,
        kind="approval",
        key=key,
        description=f"## Approval needed: {what}\n\n{details}" + decisions.reports(),
    )
    log.info("operator %s chose %s for %s", got.by, got.choice, key)
    got.stop_if_aborted(f"at the approval of step {step.label} ({key})")
    return got.by if got.choice == "approve" else None


def overwrite_notice(o: RunOptions) -> str:
    """What the reset will overwrite, for the approval text (empty: nothing known).

    Today's snapshots come from a read-only probe of the site (the one step 7 runs
    first); what earlier runs did to the date comes from the outputs store.
    """
    from steps.runs_dates import DateUnavailable
    from steps.session import open_site
    from steps.step7_reset import reset_preview
    from store import date_guard

    assert o.date is not None
    lines: list[str] = []
    try:
        preview = reset_preview(open_site(o.site), date=o.date, round=o.round)
    except (RemoteError, DateUnavailable, OSError, ValueError, LookupError) as exc:
        lines.append(f"- today's snapshots could not be checked: {type(exc).__name__}")
    else:
        if preview["snapshots"]:
            lines.append(
                "- **reset.sh ran already today: it will overwrite** today's snapshot "
                + ", ".join(f"`{s}`" for s in preview["snapshots"])
            )
        if preview["working_files"]:
            lines.append(f"- it archives {preview['working_files']} working files of {o.date}")
    for done in date_guard.history(o.round, o.date, o.site):
        lines.append(f"- this date was already {done}: that is overwritten")
    return ("### What the reset overwrites\n\n" + "\n".join(lines) + "\n") if lines else ""
