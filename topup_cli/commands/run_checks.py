"""Checks before a run is created: the definition and its parameters, the date's safety
(``store/date_guard.py``) and the deployment that serves the definition.

Why apart from the commands: ``run``, ``submit``, ``dates`` and ``backfill`` all refuse bad
input here (exit 2) before anything reaches Prefect.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from topup_cli.api import Target
from topup_cli.commands.common import console, fail, settings_for


def definition_of_workflow(workflow: str, version: str | None) -> Any:
    """The definition, or exit 2 naming the workflow and the version asked for."""
    from flows.definitions import load, unknown_workflow_message

    try:
        return load(workflow, version)
    except (KeyError, LookupError, ValueError):
        raise fail(unknown_workflow_message(workflow, version), 2) from None


def check_params(definition: Any, params: dict[str, Any]) -> None:
    """Validate ``params`` against the definition before anything reaches Prefect: exit 2
    naming each bad value and the rule it breaks (no flow run is created)."""
    from pydantic import ValidationError

    try:
        definition.validate_parameters(params)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'parameters'}"
            + (f"={err['input']!r}" if "input" in err and err["type"] != "missing" else "")
            + f": {err.get('msg', 'invalid')}"
            for err in exc.errors()
        ]
        raise fail(
            f"invalid parameters for {definition.name} {definition.version}: "
            + "; ".join(problems),
            2,
        ) from None
    except ValueError as exc:
        raise fail(f"invalid parameters: {exc}", 2) from None


def store_url(data_dir: Path | None) -> str | None:
    """The outputs store the stack's flows write: the running stack's, else
    ``TOPUP_DATABASE_URL``; None when neither is known (no stray database is created)."""
    from topup_cli.state import read_state

    state = read_state(settings_for(data_dir).state_file)
    if state is not None and state.topup_database_url:
        return state.topup_database_url
    return os.environ.get("TOPUP_DATABASE_URL") or None


def date_safe(
    round: str, dates: list[str], site: str, data_dir: Path | None, *, rerun: bool | None
) -> None:
    """Refuse (exit 2, no flow run) a date without raw data in the round, and, unless
    ``rerun`` (None: not asked, e.g. a backfill, which skips processed dates itself), a date
    that was already processed, reset or submitted (``store/date_guard.py`` says why the
    check reads the outputs store)."""
    from store.date_guard import DateRefused, check_date

    url = store_url(data_dir)
    if url is None:
        console.print("[yellow]note:[/] no outputs store known: the date was not checked")
        return
    for date in dates:
        try:
            found = check_date(round, date, site, rerun=bool(rerun) or rerun is None, url=url)
        except DateRefused as exc:
            raise fail(exc.message, 2) from None
        if not found.listed:
            console.print(
                f"[yellow]note:[/] no listing of {round} yet (`topup dates --round {round}`): "
                f"raw data of {date} not checked before the run"
            )
        if found.history and rerun:
            console.print(
                f"[yellow]rerun:[/] {date} was already {'; '.join(found.history)}; the reset "
                "approval says what it overwrites"
            )


def load_latest_standard() -> Any:
    from flows.definitions import load

    return load("topup-standard")


def deployment_for(target: Target, definition: Any) -> str:
    """The deployment of that definition version, else the standard one (parameters name
    the definition either way)."""
    from prefect.exceptions import ObjectNotFound

    wanted = f"topup-standard/{definition.name}-{definition.version}"
    with target.client() as client:
        try:
            client.read_deployment_by_name(wanted)
            return wanted
        except ObjectNotFound:
            latest = load_latest_standard()
            return f"topup-standard/{latest.name}-{latest.version}"
