"""``topup dates | backfill``: the dates of a round (step 0), and one run per unprocessed date."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from topup_cli.api import CliError, start_run, wait_final
from topup_cli.commands.common import (
    ApiOpt,
    DataDirOpt,
    TokenOpt,
    UserOpt,
    api_errors,
    console,
    exit_for,
    target_for,
    user_tags,
)
from topup_cli.commands.run_checks import (
    check_params,
    date_safe,
    definition_of_workflow,
)
from topup_cli.commands.run_params import approval, given, workflow_params


def dates(
    round: Annotated[str, typer.Option("--round", help="Round, e.g. round18")] = "round18",
    site: Annotated[str | None, typer.Option(help="Site name (the stack's default)")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 600,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
) -> None:
    """Run step 0 (available-dates) and show the round's dates."""
    from topup_cli.runlogs import table_artifact

    owner = user_tags(user, token, data_dir)
    target = target_for(data_dir, api_url)
    params = {"round": round, "site": site or target.default_site}
    check_params(
        definition_of_workflow("available-dates", None), params
    )  # exit 2 before any flow run
    with api_errors(target), target.client() as client:
        fr = start_run(
            client,
            "available-dates/available-dates",
            {"round": round, "site": site or target.default_site},
            tags=owner,
        )
        with console.status(f"available-dates {fr.name} ..."):
            final = wait_final(client, fr.id, timeout)
        if final.state is None or not final.state.is_completed():
            msg = final.state.message if final.state else ""
            raise CliError(f"available-dates ended {final.state_name}: {msg} (topup logs {fr.id})")
        rows = table_artifact(client, fr.id, "available-dates")
    table = Table(title=f"dates of {round}")
    table.add_column("date")
    table.add_column("status")
    for row in rows:
        table.add_row(str(row.get("date")), str(row.get("status")))
    console.print(table)
    todo = [r["date"] for r in rows if r.get("status") == "unprocessed"]
    console.print(f"unprocessed: {', '.join(todo) if todo else 'none'}")
    failed = [r["date"] for r in rows if r.get("status") == "failed"]
    if failed:
        console.print(
            f"failed (their last run failed or was aborted; a backfill runs them again): {', '.join(failed)}"
        )


def backfill(
    round: Annotated[str, typer.Option("--round", help="Round, e.g. round18")],
    dates: Annotated[str | None, typer.Option(help="Only these dates (comma-separated)")] = None,
    max_dates: Annotated[int | None, typer.Option(help="At most this many dates")] = None,
    workflow: Annotated[str, typer.Option(help="Per-date workflow")] = "topup-standard",
    version: Annotated[str | None, typer.Option(help="Definition version (latest)")] = None,
    site: Annotated[str | None, typer.Option(help="Site name (the stack's default)")] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Pre-approve the reset of each verified date")
    ] = False,
    approved_by: Annotated[str | None, typer.Option(help="Recorded approver")] = None,
    poll_seconds: Annotated[float | None, typer.Option(help="Batch polling interval")] = None,
    max_wait_minutes: Annotated[float | None, typer.Option(help="Batch wait limit")] = None,
    submission: Annotated[
        bool,
        typer.Option(
            "--submission/--no-submission",
            help="At the end, once every date of the round is verified, propose the round's "
            "database submission (it waits for an operator's approval of each part)",
        ),
    ] = True,
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the dates")] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 7
    * 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start a backfill of a round (one topup-standard run per unprocessed date)."""
    from topup_cli.runlogs import watch_children

    definition = definition_of_workflow(workflow, version)
    owner = user_tags(user, token, data_dir)
    target = target_for(data_dir, api_url)
    params = workflow_params(definition, round, site or target.default_site)
    # the reset of each verified date; the round's submission is always asked for
    params |= approval(approve, approved_by, approve_reset=True)
    params |= given(
        dates=dates,
        max_dates=max_dates,
        poll_seconds=poll_seconds,
        max_wait_minutes=max_wait_minutes,
    )
    if not submission:
        params["propose_submission"] = False
    # As `run` does: refused here (exit 2) instead of a flow run that fails at its start.
    check_params(definition_of_workflow("backfill", None), params)
    if dates:  # the dates asked for by name; the flow itself skips processed ones
        date_safe(round, dates.split(","), params["site"], data_dir, rerun=None)
    with api_errors(target), target.client() as client:
        fr = start_run(client, "backfill/backfill", params, tags=owner)
        console.print(f"started backfill {fr.name} ({fr.id})")
        console.print(f"Prefect UI: {target.run_url(fr.id)}")
        if not watch:
            return
        final = watch_children(client, fr.id, console, timeout)
    message = final.state.message if final.state is not None else None
    console.print(f"backfill {fr.name}: {final.state_name}" + (f" - {message}" if message else ""))
    raise exit_for(final)
