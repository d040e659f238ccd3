"""``topup run | attach | retry | submit | logs``: start one run and follow it, come back to
it, run it again, read its logs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from topup_cli.api import Target, find_run, start_run
from topup_cli.commands.common import (
    ApiOpt,
    DataDirOpt,
    FollowTimeoutOpt,
    PromptOpt,
    TimingsOpt,
    TokenOpt,
    UserOpt,
    WatchOpt,
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
    deployment_for,
)
from topup_cli.commands.run_params import approval, given, workflow_params


def run(
    date: Annotated[str, typer.Option(help="Data-taking date, e.g. 250624")],
    round: Annotated[str, typer.Option("--round", help="Round, e.g. round18")] = "round18",
    workflow: Annotated[str, typer.Option(help="Workflow definition")] = "topup-standard",
    version: Annotated[str | None, typer.Option(help="Definition version (latest)")] = None,
    site: Annotated[str | None, typer.Option(help="Site name (the stack's default)")] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Pre-approve the reset of a verified date")
    ] = False,
    approved_by: Annotated[str | None, typer.Option(help="Recorded approver")] = None,
    rerun: Annotated[
        bool,
        typer.Option(
            "--rerun", help="Run a date that was already processed, reset or submitted again"
        ),
    ] = False,
    poll_seconds: Annotated[float | None, typer.Option(help="Batch polling interval")] = None,
    max_wait_minutes: Annotated[float | None, typer.Option(help="Batch wait limit")] = None,
    start_at_step: Annotated[str | None, typer.Option(help="e.g. step3_1")] = None,
    watch: WatchOpt = True,
    prompt: PromptOpt = True,
    timeout: FollowTimeoutOpt = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
    timings: TimingsOpt = False,
) -> None:
    """Start a run of a workflow deployment and show its steps live."""
    definition = definition_of_workflow(workflow, version)
    owner = user_tags(user, token, data_dir)
    target = target_for(data_dir, api_url)
    params = {"date": date, **workflow_params(definition, round, site or target.default_site)}
    # the reset of a verified date (and, in the old definitions, their step 8)
    params |= approval(approve, approved_by, approve_reset=True)
    if approve and "approve_db_submit" in definition.parameters:
        params["approve_db_submit"] = True
    params |= given(
        poll_seconds=poll_seconds, max_wait_minutes=max_wait_minutes, start_at_step=start_at_step
    )
    check_params(definition, {k: v for k, v in params.items() if k in definition.parameters})
    date_safe(round, [date], params["site"], data_dir, rerun=rerun)
    _start_and_follow(target, None, params, definition, watch, prompt, timeout, owner, timings)


def _start_and_follow(
    target: Target,
    deployment: str | None,
    params: dict[str, Any],
    definition: Any,
    watch: bool,
    prompt: bool,
    timeout: float,
    owner: list[str],
    timings: bool = False,
) -> None:
    """Start a run of ``deployment``, follow it live and exit 0 only if it Completed."""
    from topup_cli.operate import follow

    with api_errors(target, detachable=True), target.client() as client:
        deployment = deployment or deployment_for(target, definition)
        began = time.monotonic()
        flow_run = start_run(client, deployment, params, tags=owner)
        console.print(f"started flow run {flow_run.name} ({flow_run.id}) of {deployment}")
        console.print(f"Prefect UI: {target.run_url(flow_run.id)}")
        if not watch:
            return
        final, watcher = follow(client, flow_run, definition, target, console, prompt, timeout)
    if timings and watcher.first_step_at is not None:
        console.print(f"first step seen {watcher.first_step_at - began:.1f}s after the start")
    raise exit_for(final)


def attach(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    prompt: PromptOpt = True,
    timeout: FollowTimeoutOpt = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Re-attach to a running or paused run: its step bars, and its prompts on a terminal.

    Leaving (Ctrl-C) does not touch the run; attach again at any time. Exit 0 only if the
    run Completed.
    """
    from topup_cli.operate import definition_of, follow
    from topup_cli.runlogs import watch_children

    target = target_for(data_dir, api_url)
    with api_errors(target, detachable=True), target.client() as client:
        run = find_run(client, flow_run)
        definition = definition_of(client, run)
        console.print(f"attached to flow run {run.name} ({run.id}): {run.state_name}")
        console.print(f"Prefect UI: {target.run_url(run.id)}")
        if definition.name == "backfill":
            # Its dates are child runs: their pauses are answered by attaching to them.
            console.print("a backfill: attach to a date's run to answer its prompts")
            final = watch_children(client, run.id, console, timeout)
            console.print(f"backfill {run.name}: {final.state_name}")
        else:
            final, _ = follow(client, run, definition, target, console, prompt, timeout)
    raise exit_for(final)


def retry(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    watch: WatchOpt = True,
    prompt: PromptOpt = True,
    timeout: FollowTimeoutOpt = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Also a run that may have submitted to the database (step 8)"),
    ] = False,
) -> None:
    """Retry a Failed or Crashed run: the same flow run goes back to Scheduled.

    The worker starts it again; completed steps come back Cached and the others re-attach
    to the remote work they started (as the facade's retry and the crashed-run recovery
    do). Any other state is refused, saying what to do instead. A run that may have
    submitted to the database (the recovery's rule) needs --yes after checking the ledger.
    """
    from topup_cli.operate import definition_of, follow
    from topup_cli.operate import retry as retry_run

    target = target_for(data_dir, api_url)
    with api_errors(target, detachable=True), target.client() as client:
        run = find_run(client, flow_run)
        was = run.state_name
        now = retry_run(client, run, user, confirmed=yes)
        console.print(
            f"flow run {run.name} ({run.id}): {was} -> {now}; the worker starts it "
            "again, its completed steps come back Cached"
        )
        console.print(f"Prefect UI: {target.run_url(run.id)}")
        if not watch:
            return
        definition = definition_of(client, run)
        final, _ = follow(client, run, definition, target, console, prompt, timeout)
    raise exit_for(final)


def submit(
    round: Annotated[str, typer.Option("--round", help="Round, e.g. round18")],
    run_from: Annotated[
        int | None, typer.Option("--from", help="First run (default: interval.txt's first)")
    ] = None,
    run_to: Annotated[
        int | None, typer.Option("--to", help="Last run (default: interval.txt's last)")
    ] = None,
    site: Annotated[str | None, typer.Option(help="Site name (the stack's default)")] = None,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve",
            help="Pre-approve the normal case only (verified dates, new runs); else it asks",
        ),
    ] = False,
    approved_by: Annotated[str | None, typer.Option(help="Recorded approver")] = None,
    watch: WatchOpt = True,
    prompt: PromptOpt = True,
    timeout: FollowTimeoutOpt = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a round's constants to the offline database (step 8), each part after approval."""
    definition = definition_of_workflow("submit-constants", None)
    owner = user_tags(user, token, data_dir)
    target = target_for(data_dir, api_url)
    params: dict[str, Any] = {"round": round, "site": site or target.default_site}
    params |= given(run_from=run_from, run_to=run_to)
    params |= approval(approve, approved_by, approve_db_submit=True)
    check_params(definition, params)
    _start_and_follow(
        target,
        "submit-constants/submit-constants",
        params,
        definition,
        watch,
        prompt,
        timeout,
        owner,
    )


def logs(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the run ends")] = False,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Print the logs of a flow run (its tasks included), oldest first."""
    from topup_cli.runlogs import print_logs

    target = target_for(data_dir, api_url)
    with api_errors(target), target.client() as client:
        run = find_run(client, flow_run)
        print_logs(client, run.id, console, follow=follow)
