"""The flow parameters the procedure and its decisions read, in one frozen value."""

from __future__ import annotations

from dataclasses import dataclass


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
