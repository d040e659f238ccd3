"""Refuse a run's date(s) in the request, before the run exists.

Why its own module: the same check guards creating a task, starting it, and resuming it
onto another date; it reads the outputs store only (``store/date_guard.py`` says why).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from facade.errors import ApiError
from flows.definitions import WorkflowDefinition
from store import date_guard


def guard_dates(
    session: Session, defn: WorkflowDefinition, flow: dict[str, Any], rerun: bool
) -> None:
    """Refuse the date(s) of a run before it exists: no raw data in the round (422), or
    already processed, reset or submitted without ``rerun`` (409); the field is named.

    Read from the outputs store only (``store/date_guard.py`` says why: no SSH in a request).
    A backfill's ``dates`` are checked for raw data only: the flow skips processed dates.
    """
    round_ = flow.get("round")
    if not isinstance(round_, str):
        return
    site = flow.get("site") if isinstance(flow.get("site"), str) else "default"
    checks: list[tuple[str, str, bool]] = []
    if "date" in defn.parameters and isinstance(flow.get("date"), str):
        checks.append(("date", flow["date"], rerun))
    if "dates" in defn.parameters and isinstance(flow.get("dates"), str):
        checks += [("dates", d, True) for d in flow["dates"].split(",") if d]
    if not checks:
        return
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    for name, date, allow_rerun in checks:
        try:
            date_guard.check_date(round_, date, str(site), rerun=allow_rerun, url=url)
        except date_guard.DateRefused as exc:
            status = 409 if exc.reason == "rerun_needed" else 422
            # named as parameter errors name their field (the key inside ``parameters``)
            field = "rerun" if exc.reason == "rerun_needed" else name
            raise ApiError(status, exc.message, field=field) from None
