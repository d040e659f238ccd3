"""The physics numbers of each run (IST, 50 Hz windows, ETS cuts): writes and the views
that the date summary and the round's trends are built from.

Why here: flows record the values the steps already read (``run_physics``), and both the
flow artifacts and the facade build the same summary and trends from this one place, so a
number shown anywhere is the number a step read from the site's files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field
from sqlmodel import select

from store import dates as date_store
from store.db import session
from store.models import RunPhysics, utcnow

# IST of a run taken in non-topup mode (spec steps-0-2.md, step 1.3): anything else is odd.
EXPECTED_IST = 15000000


# --------------------------------------------------------------------------- writes


def _upsert(
    round: str, date: str, flow_run_id: str, runs: Iterable[int], url: str | None, **values: Any
) -> None:
    with session(url) as s:
        for run in runs:
            row = s.get(RunPhysics, (round, date, run))
            if row is None:
                row = RunPhysics(round=round, date=date, run=run)
            for name, per_run in values.items():
                setattr(row, name, per_run.get(run))
            row.flow_run_id, row.updated_at = flow_run_id, utcnow()
            s.add(row)


def record_ist(
    round: str,
    date: str,
    flow_run_id: str,
    ist: Mapping[int, Mapping[str, int | None]],
    registered: Sequence[int],
    url: str | None = None,
) -> None:
    """Step 1.3's three interval values per run, and which runs it put in interval.txt."""
    _upsert(
        round,
        date,
        flow_run_id,
        ist,
        url,
        ist={r: dict(v) for r, v in ist.items()},
        registered={r: r in set(registered) for r in ist},
    )


def record_windows(
    round: str,
    date: str,
    flow_run_id: str,
    runs: Sequence[int],
    windows: Mapping[int, list[list[float]]],
    url: str | None = None,
) -> None:
    """Step 3.2's 50 Hz windows of ``runs`` (a run without a window line gets ``[]``)."""
    _upsert(round, date, flow_run_id, runs, url, windows={r: windows.get(r, []) for r in runs})


def record_ets_cuts(
    round: str,
    date: str,
    flow_run_id: str,
    runs: Sequence[int],
    cuts: Mapping[int, list[list[float]]],
    url: str | None = None,
) -> None:
    """Step 5.2's ETS cut windows of ``runs`` (a run without a cut line gets ``[]``)."""
    _upsert(round, date, flow_run_id, runs, url, ets_cuts={r: cuts.get(r, []) for r in runs})


def rows(round: str, date: str | None = None, url: str | None = None) -> list[RunPhysics]:
    """The round's rows (one date's when given), by run number."""
    with session(url) as s:
        q = select(RunPhysics).where(RunPhysics.round == round)
        if date is not None:
            q = q.where(RunPhysics.date == date)
        out = list(s.exec(q.order_by(RunPhysics.run)).all())  # type: ignore[arg-type]
        for r in out:
            s.expunge(r)
        return out


# --------------------------------------------------------------------------- views


class RunSummary(BaseModel):
    """One run of a date: its numbers, whether it goes to the database, what looks wrong."""

    run: int
    ist: dict[str, int | None] | None = Field(
        description="interval values of Interval_run{run}.txt (step 1.3)"
    )
    windows: list[list[float]] | None = Field(description="50 Hz windows [lo, hi] in ms (3.2)")
    ets_cuts: list[list[float]] | None = Field(description="ETS cut windows [lo, hi] in s (5.2)")
    registered: bool = Field(description="step 1.3 put the run into interval.txt")
    excluded: str | None = Field(description="why a person took the run out, if one did")
    to_database: bool
    anomalies: list[str]


class DateSummary(BaseModel):
    round: str
    date: str
    status: str | None = Field(description="the date record's status (running, verified ...)")
    expected_ist: int = EXPECTED_IST
    runs: list[RunSummary]
    runs_to_database: list[int]
    anomalies: int = Field(description="runs with at least one anomaly")


class TrendPoint(BaseModel):
    date: str
    run: int
    windows: list[list[float]] | None
    ets_cuts: list[list[float]] | None


class RoundTrends(BaseModel):
    round: str
    dates: list[str]
    highlight: str | None = Field(description="the date drawn highlighted (the current one)")
    points: list[TrendPoint]


def _anomalies(row: RunPhysics, excluded: str | None) -> list[str]:
    """What an operator must look at: an IST other than the non-topup value, a run step 1.3
    did not register, a run a person excluded. (Windows and cuts vary by run: the trend plot
    shows those.)"""
    out: list[str] = []
    if row.ist is not None:
        odd = {k: v for k, v in sorted(row.ist.items()) if v != EXPECTED_IST}
        out += [f"{k}={'missing' if v is None else v}" for k, v in odd.items()]
        if not row.registered:
            out.append("not in interval.txt")
    if excluded:
        out.append(f"excluded ({excluded})")
    return out


def date_summary(round: str, date: str, url: str | None = None) -> DateSummary:
    """The date's runs with their numbers and anomalies, from the store only."""
    excluded = {e.run: e.reason for e in date_store.exclusions(round, url=url)}
    record = date_store.date_record(round, date, url=url)
    runs: list[RunSummary] = []
    for row in rows(round, date, url=url):
        why = excluded.get(row.run)
        runs.append(
            RunSummary(
                run=row.run,
                ist=row.ist,
                windows=row.windows,
                ets_cuts=row.ets_cuts,
                registered=row.registered,
                excluded=why,
                to_database=row.registered and why is None,
                anomalies=_anomalies(row, why),
            )
        )
    return DateSummary(
        round=round,
        date=date,
        status=record.status if record else None,
        runs=runs,
        runs_to_database=[r.run for r in runs if r.to_database],
        anomalies=sum(1 for r in runs if r.anomalies),
    )


def round_trends(round: str, highlight: str | None = None, url: str | None = None) -> RoundTrends:
    """Every recorded run of the round by run number; ``highlight`` defaults to the newest
    date that has numbers."""
    points = [
        TrendPoint(date=r.date, run=r.run, windows=r.windows, ets_cuts=r.ets_cuts)
        for r in rows(round, url=url)
    ]
    dates = sorted({p.date for p in points})
    return RoundTrends(
        round=round,
        dates=dates,
        highlight=highlight if highlight is not None else (dates[-1] if dates else None),
        points=points,
    )
