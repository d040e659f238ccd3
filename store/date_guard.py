"""Before a run of a date is created: has the date raw data, and was it done already?

Why from the outputs store, not a fresh look at the site: the CLI and the facade must refuse
*before* a flow run exists, and neither holds a connection to the site (the facade never opens
SSH inside an HTTP request: the legacy service did, and a slow jump host hung its API). Step 0
already records its listing of a round here (``all_dates`` and ``dates_without_data``, the
same read-only command every later step relies on), and the flows record what they did to a
date (``date_records``, the submission ledger). So the check costs one local query and no
remote command.

What is safe about it:
- a round with a recorded listing refuses any date the listing does not show with raw files;
  a date that arrived since the listing is refused too, with the hint to list the round again
  (a refusal is cheap to undo, a run on a date without data is not);
- a round without any listing yet is not refused here: the caller says the date was not
  checked, and every step still refuses a date without raw files (code 70) before it writes;
- everything is scoped to the site the run goes to (the ``site`` parameter the flows recorded),
  so a listing or a history of another site never decides for this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import select

from store.db import session
from store.models import DateRecord, StepRun, Submission, WorkflowRun

# A date in one of these states was processed to the end (verified, or ended with gaps).
PROCESSED = ("verified", "unverified")


class DateRefused(ValueError):
    """The run of a date must not be created; ``field`` names the parameter at fault."""

    def __init__(self, message: str, field: str, reason: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason  # "no_raw_data" or "rerun_needed"


@dataclass(frozen=True)
class Listing:
    """Step 0's latest listing of a round on one site."""

    flow_run_id: str
    recorded_at: datetime
    all_dates: list[str]
    without_data: list[str]


@dataclass(frozen=True)
class DateCheck:
    """What the check found: ``listed`` False means no listing decided (not checked)."""

    round: str
    date: str
    listed: bool
    history: list[str] = field(default_factory=list)


def _site_of(s: object, flow_run_id: str, cache: dict[str, str | None]) -> str | None:
    if flow_run_id not in cache:
        row = s.get(WorkflowRun, flow_run_id)  # type: ignore[attr-defined]
        value = row.parameters.get("site") if row is not None and row.parameters else None
        cache[flow_run_id] = value if isinstance(value, str) else None
    return cache[flow_run_id]


def _same_site(s: object, flow_run_id: str, site: str, cache: dict[str, str | None]) -> bool:
    """A run whose site is unknown counts as this site's (the cautious reading)."""
    found = _site_of(s, flow_run_id, cache) if flow_run_id else None
    return found is None or found == site


def latest_listing(round: str, site: str, url: str | None = None) -> Listing | None:
    """The newest successful step-0 listing of ``round`` made on ``site``."""
    cache: dict[str, str | None] = {}
    with session(url) as s:
        rows = s.exec(
            select(StepRun)
            .where(StepRun.round == round, StepRun.task_name == "step0")
            .where(StepRun.outcome.in_(["success", "warning"]))  # type: ignore[attr-defined]
            .order_by(StepRun.recorded_at.desc())  # type: ignore[attr-defined]
        )
        for row in rows:
            data = row.data or {}
            if "all_dates" not in data or _site_of(s, row.flow_run_id, cache) != site:
                continue
            return Listing(
                flow_run_id=row.flow_run_id,
                recorded_at=row.recorded_at,
                all_dates=[str(d) for d in data.get("all_dates") or []],
                without_data=[str(d) for d in data.get("dates_without_data") or []],
            )
    return None


def history(round: str, date: str, site: str, url: str | None = None) -> list[str]:
    """What was already done to the date on ``site``, one sentence each (empty: nothing)."""
    cache: dict[str, str | None] = {}
    done: list[str] = []
    with session(url) as s:
        rec = s.get(DateRecord, (round, date))
        if rec is not None and _same_site(s, rec.flow_run_id, site, cache):
            when = rec.updated_at.strftime("%Y-%m-%d %H:%M")
            if rec.status in PROCESSED:
                done.append(
                    f"processed ({rec.status}, {rec.workflow or 'a run'}, last {when} UTC"
                    + (f", runs {', '.join(map(str, rec.runs))})" if rec.runs else ")")
                )
            if rec.reset_done:
                done.append(
                    "reset (reset.sh archived its working files and snapshotted the round's "
                    "cumulative files)"
                )
        subs = s.exec(
            select(Submission)
            .where(Submission.round == round, Submission.outcome == "submitted")
            .order_by(Submission.id)  # type: ignore[arg-type]
        )
        parts = [
            f"{row.part} (#{row.id})"
            for row in subs
            if date in (row.dates or []) and _same_site(s, row.flow_run_id, site, cache)
        ]
        if parts:
            done.append(f"submitted to the database: {', '.join(parts)}")
    return done


def check_date(
    round: str, date: str, site: str, *, rerun: bool = False, url: str | None = None
) -> DateCheck:
    """Refuse (``DateRefused``) a date without raw data, or one done already without
    ``rerun``; otherwise say whether a listing decided and what was done before."""
    listing = latest_listing(round, site, url)
    if listing is not None:
        when = listing.recorded_at.strftime("%Y-%m-%d %H:%M")
        why = None
        if date in listing.without_data:
            why = f"DATA/{date} has no raw file"
        elif date not in listing.all_dates:
            why = f"no directory {date} in DATA"
        if why is not None:
            raise DateRefused(
                f"date {date} has no raw data in {round}: {why} (step 0 listed {round} at "
                f"{when} UTC; if the data arrived since, list the round again: "
                f"`topup dates --round {round}`)",
                "date",
                "no_raw_data",
            )
    done = history(round, date, site, url)
    if done and not rerun:
        raise DateRefused(
            f"date {date} of {round} was already {'; '.join(done)}. Running it again "
            "overwrites its working files (and a reset overwrites today's snapshot): ask for it "
            "explicitly (CLI --rerun, API parameter rerun: true)",
            "rerun",
            "rerun_needed",
        )
    return DateCheck(round=round, date=date, listed=listing is not None, history=done)
