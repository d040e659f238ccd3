"""What a run writes into its date's record: the verification it found, the runs left out.

The gate before the reset and the IST decision both end in these records; step 0 and the
submission read them (``store/dates.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from flows.definitions import WorkflowDefinition
from flows.run_options import RunOptions
from flows.verification import Verification
from store import dates as date_store


def record_verification(
    definition: WorkflowDefinition,
    o: RunOptions,
    v: Verification,
    status: str,
    accepted_by: str | None = None,
) -> None:
    """Write what the check found into the date's record."""
    date_store.mark_date(
        o.round,
        v.date,
        status,
        flow_run_id=o.run_key,
        workflow=f"{definition.name}@{definition.version}",
        runs=v.runs,
        registered_runs=v.registered_runs,
        missing=v.missing,
        accepted=v.missing if accepted_by else None,
        accepted_by=accepted_by,
    )


def exclude_runs(o: RunOptions, runs: Sequence[int], *, reason: str, by: str, note: str) -> None:
    """Take a person's ``runs`` of this date out of the round's constants (``reason``: who)."""
    date_store.exclude_runs(
        o.round,
        runs,
        date=o.date,
        reason=reason,
        decided_by=by,
        note=note,
        flow_run_id=o.run_key,
    )
