"""``topup``: run the Topup stack and its workflows from a terminal.

    topup up [--sim]            start and supervise Prefect server + UI, worker, facade
                                (and the simulated site); Ctrl-C or `topup down` stops it
    topup status | down         look at / stop the stack of the data dir (another shell)
    topup run --date 250624     start a run of a workflow deployment and follow it live
    topup attach <flow-run>     follow a running or paused run again, answer its prompts
    topup retry <flow-run>      run a Failed or Crashed run again (Scheduled)
    topup logs <flow-run>       the run's logs (id or name), --follow to keep reading
    topup dates --round R       the dates of a round and which are unprocessed (step 0)
    topup backfill --round R    every unprocessed date of a round, one run after another
    topup token create --user U an API token for the facade (shown once)
    topup doctor [--site NAME]  read-only preflight of a site (exit 1: not usable)
    topup transcript <run>      the run's remote commands (--json: for topup-sim replay)

Settings: TOPUP_STACK_* (topup_cli/settings.py), e.g. TOPUP_STACK_DATA_DIR (default var/).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from topup_cli.api import CliError, Target, find_run, resolve, start_run, wait_final
from topup_cli.operate import Detached
from topup_cli.settings import CliSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
token_app = typer.Typer(help="API tokens of the facade", no_args_is_help=True)
app.add_typer(token_app, name="token")
console = Console(highlight=False, soft_wrap=True)

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Stack data dir (default $TOPUP_STACK_DATA_DIR or var/)"),
]
ApiOpt = Annotated[
    str | None,
    typer.Option("--api-url", help="Prefect API URL (default: the stack of the data dir)"),
]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="TOPUP_USER",
        help="Whom the run is for: the facade shows it as this user's task (default: login)",
    ),
]


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TOPUP_TOKEN",
        help="A facade API token: the run is for its user (instead of --user)",
    ),
]

TimingsOpt = Annotated[
    bool,
    typer.Option(
        "--timings", hidden=True, help="Also print when the first step was seen (benchmarks)"
    ),
]


def _user_tags(
    user: str | None, token: str | None = None, data_dir: Path | None = None
) -> list[str]:
    """The run's owner tag (``facade-user:<name>``): the token's user, else --user /
    $TOPUP_USER, else the login name."""
    import getpass

    from facade.tokens import USER_NAME_RE, resolve_token

    if token:
        with _token_session(data_dir) as session:
            owner = resolve_token(session, token)
        if owner is None:
            raise _fail("unknown or revoked token", 2)
        if user is not None and user != owner.name:
            raise _fail(f"--user {user} does not match the token's user", 2)
        user = owner.name
    name = user if user is not None else getpass.getuser()
    if not USER_NAME_RE.fullmatch(name):
        raise _fail("user name must be 1-64 characters of letters, digits, _ . @ -", 2)
    return [f"facade-user:{name}"]


def _settings(data_dir: Path | None, **overrides: Any) -> CliSettings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return CliSettings(**values)


def _target(data_dir: Path | None, api_url: str | None) -> Target:
    """The stack's API; exit 1 saying how to start one when there is none (no port guessed)."""
    try:
        return resolve(_settings(data_dir), api_url)
    except CliError as exc:
        raise _fail(str(exc)) from None


def _detached(left: Any) -> typer.Exit:
    """Ctrl-C while following a run: the run goes on (or keeps waiting) without the CLI."""
    run = left.run
    console.print(
        f"left flow run {escape(run.name)} as it is ({run.state_name}); "
        f"`topup attach {escape(run.name)}` comes back to it"
    )
    return typer.Exit(130)


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/] {escape(message)}")  # values may hold [brackets]
    return typer.Exit(code)


# ------------------------------------------------------------------------------ up
@app.command()
def up(
    data_dir: DataDirOpt = None,
    sim: Annotated[bool, typer.Option("--sim", help="Also run the simulated site")] = False,
    fresh_sim: Annotated[bool, typer.Option(help="Rebuild the simulated site first")] = False,
    prefect_port: Annotated[int | None, typer.Option(help="0: any free port")] = None,
    facade_port: Annotated[int | None, typer.Option(help="0: any free port")] = None,
    ui: Annotated[bool | None, typer.Option("--ui/--no-ui", help="Prefect UI")] = None,
    ha: Annotated[
        bool,
        typer.Option(
            "--ha",
            help="High availability: 2 Prefect API servers + services on PostgreSQL and "
            "Redis, 2 facades, behind HAProxy (settings TOPUP_HA_*)",
        ),
    ] = False,
) -> None:
    """Start the stack and keep it running until Ctrl-C, SIGTERM or `topup down`."""
    from pydantic import ValidationError

    from topup_cli.ha import HaSettings
    from topup_cli.supervisor import AlreadyRunning, Shutdown, Supervisor

    settings = _settings(data_dir, prefect_port=prefect_port, facade_port=facade_port, ui=ui)
    try:
        ha_settings = HaSettings() if ha else None
    except ValidationError as exc:
        # Locations and reasons only: the values may be database URLs with a password.
        why = "; ".join(
            f"TOPUP_HA_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise _fail(f"bad HA setting: {why}", code=2) from None
    sup = Supervisor(
        settings, sim=sim, fresh_sim=fresh_sim, say=lambda m: console.print(m), ha=ha_settings
    )
    began = time.monotonic()
    try:
        sup.check_free()
        sup.install_signals()
        state = sup.start()
    except AlreadyRunning as exc:
        raise _fail(str(exc)) from None
    except Shutdown:
        console.print("interrupted while starting; stopped")
        raise typer.Exit(130) from None
    except Exception as exc:
        raise _fail(f"the stack did not start: {exc}") from None
    console.print(f"[green]stack up[/] in {time.monotonic() - began:.1f}s")
    print_urls(state)
    console.print(f"stop with Ctrl-C or `topup down --data-dir {state.data_dir}`")
    code = sup.supervise()
    console.print("stopping ...")
    clean = sup.stop()
    console.print("stopped" + ("" if clean else " (some processes had to be killed)"))
    raise typer.Exit(code if clean else max(code, 1))


def print_urls(state: Any) -> None:
    if state.ui_url:
        console.print(f"Prefect UI   {state.ui_url}")
    console.print(f"Prefect API  {state.api_url}")
    console.print(f"facade       {state.facade_url}/docs")
    console.print(f"logs         {state.log_dir}")
    console.print(f"data dir     {state.data_dir}")
    if state.notifications:
        console.print(f"notifications {escape(state.notifications)}")
    if state.sim_root:
        console.print(f"sim site     {state.sim_root} (site {state.default_site!r})")


# --------------------------------------------------------------------- status/down
@app.command()
def status(
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Each component of the stack: pid, alive, URL and health. Exit 1 if not all healthy."""
    from topup_cli.control import stack_status

    st = stack_status(_settings(data_dir).state_file)
    waiting = _waiting(st.api_url if st.running else None)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **st.model_dump(),
                    "all_healthy": st.all_healthy,
                    "waiting": [w.model_dump() for w in waiting or []],
                },
                indent=1,
            )
        )
        raise typer.Exit(0 if st.all_healthy else 1)
    if st.supervisor_pid is None:
        console.print(f"no stack in data dir {escape(str(st.data_dir))} (no stack.json there)")
        console.print(f"start one with: {escape(start_hint(st.data_dir))}")
        raise typer.Exit(1)
    console.print(f"data dir     {escape(str(st.data_dir))}")
    console.print(
        f"supervisor   pid {st.supervisor_pid}: {'running' if st.running else 'dead'} ({st.phase})"
    )
    if not st.running:
        console.print(f"the stack is not running; start it with: {escape(start_hint(st.data_dir))}")
    console.print(f"notifications {escape(st.notifications or 'unknown (older stack)')}")
    table = Table()
    for col in ("component", "pid", "alive", "healthy", "url"):
        table.add_column(col)
    for c in st.components:
        table.add_row(c.name, str(c.pid), _yes(c.alive), _yes(c.healthy), c.url or "")
    console.print(table)
    _print_waiting(waiting)
    raise typer.Exit(0 if st.all_healthy else 1)


def _waiting(api_url: str | None) -> list[Any] | None:
    """The runs waiting for an operator (None when the API cannot be asked)."""
    if not api_url:
        return None
    from topup_cli.waiting import waiting_runs

    try:
        return waiting_runs(api_url)
    except (OSError, httpx.HTTPError):
        return None


def _print_waiting(waiting: list[Any] | None) -> None:
    """One line per run that waits: its date and the decision it waits for."""
    if waiting is None:
        return
    if not waiting:
        console.print("no run waits for an operator")
        return
    console.print(f"{len(waiting)} run(s) wait for an operator:")
    for w in waiting:
        what = " ".join(p for p in (w.round, w.date) if p)
        console.print(f"  {escape(what)}: {escape(w.waits_for)}  [dim]({escape(w.name)})[/]")


def start_hint(data_dir: str | Path | None) -> str:
    """The command that starts a stack in ``data_dir`` (with the simulated site)."""
    return f"topup up --sim --data-dir {data_dir}" if data_dir else "topup up --sim"


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


@app.command()
def down(
    data_dir: DataDirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop")] = 120.0,
) -> None:
    """Stop the stack started by `topup up` in another shell."""
    from topup_cli.control import stop_stack

    state, left = stop_stack(_settings(data_dir).state_file, timeout)
    if state is None:
        console.print("no stack to stop")
        return
    if left:
        raise _fail(f"processes still alive: {left}")
    console.print(f"stopped the stack of {state.data_dir}")


# ----------------------------------------------------------------------------- run
def _definition(workflow: str, version: str | None) -> Any:
    """The definition, or exit 2 naming the workflow and the version asked for."""
    from flows.definitions import load, unknown_workflow_message

    try:
        return load(workflow, version)
    except (KeyError, LookupError, ValueError):
        raise _fail(unknown_workflow_message(workflow, version), 2) from None


def _checked(definition: Any, params: dict[str, Any]) -> None:
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
        raise _fail(
            f"invalid parameters for {definition.name} {definition.version}: "
            + "; ".join(problems),
            2,
        ) from None
    except ValueError as exc:
        raise _fail(f"invalid parameters: {exc}", 2) from None


def _store_url(data_dir: Path | None) -> str | None:
    """The outputs store the stack's flows write: the running stack's, else
    ``TOPUP_DATABASE_URL``; None when neither is known (no stray database is created)."""
    from topup_cli.state import read_state

    state = read_state(_settings(data_dir).state_file)
    if state is not None and state.topup_database_url:
        return state.topup_database_url
    return os.environ.get("TOPUP_DATABASE_URL") or None


def _date_safe(
    round: str, dates: list[str], site: str, data_dir: Path | None, *, rerun: bool | None
) -> None:
    """Refuse (exit 2, no flow run) a date without raw data in the round, and, unless
    ``rerun`` (None: not asked, e.g. a backfill, which skips processed dates itself), a date
    that was already processed, reset or submitted (``store/date_guard.py`` says why the
    check reads the outputs store)."""
    from store.date_guard import DateRefused, check_date

    url = _store_url(data_dir)
    if url is None:
        console.print("[yellow]note:[/] no outputs store known: the date was not checked")
        return
    for date in dates:
        try:
            found = check_date(round, date, site, rerun=bool(rerun) or rerun is None, url=url)
        except DateRefused as exc:
            raise _fail(exc.message, 2) from None
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


def _deployment_for(target: Target, definition: Any) -> str:
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


@app.command()
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
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the run")] = True,
    prompt: Annotated[
        bool, typer.Option("--prompt/--no-prompt", help="Answer pauses here (else in the UI)")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
    timings: TimingsOpt = False,
) -> None:
    """Start a run of a workflow deployment and show its steps live."""
    import getpass

    definition = _definition(workflow, version)
    owner = _user_tags(user, token, data_dir)
    target = _target(data_dir, api_url)
    params: dict[str, Any] = {
        "date": date,
        "round": round,
        "site": site or target.default_site,
        "workflow": definition.name,
        "workflow_version": definition.version,
    }
    if approve:
        # the reset of a verified date (and, in the old definitions, their step 8)
        params.update(approve_reset=True, approved_by=approved_by or getpass.getuser())
        if "approve_db_submit" in definition.parameters:
            params["approve_db_submit"] = True
    for name, value in (
        ("poll_seconds", poll_seconds),
        ("max_wait_minutes", max_wait_minutes),
        ("start_at_step", start_at_step),
    ):
        if value is not None:
            params[name] = value
    _checked(definition, {k: v for k, v in params.items() if k in definition.parameters})
    _date_safe(round, [date], params["site"], data_dir, rerun=rerun)
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

    try:
        with target.client() as client:
            deployment = deployment or _deployment_for(target, definition)
            began = time.monotonic()
            flow_run = start_run(client, deployment, params, tags=owner)
            console.print(f"started flow run {flow_run.name} ({flow_run.id}) of {deployment}")
            console.print(f"Prefect UI: {target.run_url(flow_run.id)}")
            if not watch:
                return
            final, watcher = follow(client, flow_run, definition, target, console, prompt, timeout)
    except Detached as left:
        raise _detached(left) from None
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
    if timings and watcher.first_step_at is not None:
        console.print(f"first step seen {watcher.first_step_at - began:.1f}s after the start")
    raise typer.Exit(0 if final.state is not None and final.state.is_completed() else 1)


# -------------------------------------------------------------------------- attach
@app.command()
def attach(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    prompt: Annotated[
        bool, typer.Option("--prompt/--no-prompt", help="Answer pauses here (else in the UI)")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Re-attach to a running or paused run: its step bars, and its prompts on a terminal.

    Leaving (Ctrl-C) does not touch the run; attach again at any time. Exit 0 only if the
    run Completed.
    """
    from topup_cli.operate import definition_of, follow
    from topup_cli.runlogs import watch_children

    target = _target(data_dir, api_url)
    try:
        with target.client() as client:
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
    except Detached as left:
        raise _detached(left) from None
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
    raise typer.Exit(0 if final.state is not None and final.state.is_completed() else 1)


# --------------------------------------------------------------------------- retry
@app.command()
def retry(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the run")] = True,
    prompt: Annotated[
        bool, typer.Option("--prompt/--no-prompt", help="Answer pauses here (else in the UI)")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 86400,
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

    target = _target(data_dir, api_url)
    try:
        with target.client() as client:
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
    except Detached as left:
        raise _detached(left) from None
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
    raise typer.Exit(0 if final.state is not None and final.state.is_completed() else 1)


# -------------------------------------------------------------------------- submit
@app.command()
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
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the run")] = True,
    prompt: Annotated[
        bool, typer.Option("--prompt/--no-prompt", help="Answer pauses here (else in the UI)")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
) -> None:
    """Submit a round's constants to the offline database (step 8), each part after approval."""
    import getpass

    definition = _definition("submit-constants", None)
    owner = _user_tags(user, token, data_dir)
    target = _target(data_dir, api_url)
    params: dict[str, Any] = {"round": round, "site": site or target.default_site}
    for name, value in (("run_from", run_from), ("run_to", run_to)):
        if value is not None:
            params[name] = value
    if approve:
        params.update(approve_db_submit=True, approved_by=approved_by or getpass.getuser())
    _checked(definition, params)
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


# ---------------------------------------------------------------------------- logs
@app.command()
def logs(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the run ends")] = False,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Print the logs of a flow run (its tasks included), oldest first."""
    from topup_cli.runlogs import print_logs

    target = _target(data_dir, api_url)
    try:
        with target.client() as client:
            run = find_run(client, flow_run)
            print_logs(client, run.id, console, follow=follow)
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None


# --------------------------------------------------------------------------- dates
@app.command()
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

    owner = _user_tags(user, token, data_dir)
    target = _target(data_dir, api_url)
    params = {"round": round, "site": site or target.default_site}
    _checked(_definition("available-dates", None), params)  # exit 2 before any flow run
    try:
        with target.client() as client:
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
                raise CliError(
                    f"available-dates ended {final.state_name}: {msg} (topup logs {fr.id})"
                )
            rows = table_artifact(client, fr.id, "available-dates")
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
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


# -------------------------------------------------------------------------- doctor
@app.command()
def doctor(
    site: Annotated[str | None, typer.Option(help="Site name (default: the stack's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
    round: Annotated[str | None, typer.Option("--round", help="Round (default: site's)")] = None,
    sites_dir: Annotated[
        Path | None, typer.Option(help="Site files (default $TOPUP_SITES_DIR or the stack's)")
    ] = None,
    brief: Annotated[bool, typer.Option(help="Evidence only for checks that did not pass")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Read-only preflight of a site over the flows' own connection path.

    Exit 0: usable (warnings allowed); 1: a check failed; 2: bad input.
    """
    from steps.doctor import DoctorOptions, run_doctor
    from steps.remote.validate import InvalidValue, round_
    from steps.session import load_settings
    from topup_cli.doctor import render, resolve_site

    name = resolve_site(_settings(data_dir), site, sites_dir)
    try:
        settings = load_settings(name)
        options = DoctorOptions(round=round_(round) if round else None)
    except (ValueError, LookupError, InvalidValue) as exc:
        raise _fail(str(exc), 2) from None
    report = run_doctor(settings, name, options)
    if as_json:
        typer.echo(report.model_dump_json(indent=1))
    else:
        render(report, console, verbose=not brief)
    raise typer.Exit(0 if report.usable else 1)


# ---------------------------------------------------------------------- transcript
@app.command()
def transcript(
    flow_run: Annotated[str, typer.Argument(help="Flow-run id or name")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The file topup-sim replay reads")
    ] = False,
    full: Annotated[bool, typer.Option(help="Whole command texts")] = False,
    db_url: Annotated[str | None, typer.Option(help="Outputs store (default: the stack's)")] = None,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
) -> None:
    """Every remote command of a flow run: step, text (secrets masked), cwd, exit, duration."""
    from uuid import UUID

    from topup_cli.transcript import export, render

    run_id = flow_run
    try:
        UUID(flow_run)
    except ValueError:  # a name: the Prefect API knows its id
        target = _target(data_dir, api_url)
        try:
            with target.client() as client:
                run_id = str(find_run(client, flow_run).id)
        except CliError as exc:
            raise _fail(str(exc)) from None
        except (OSError, httpx.HTTPError) as exc:
            raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
    t = export(run_id, db_url or _token_db(data_dir))
    if not t.commands:
        raise _fail(f"no transcript for flow run {run_id}")
    if as_json:
        typer.echo(t.model_dump_json(indent=1))
    else:
        render(t, console, full=full)


# ------------------------------------------------------------------------ backfill
@app.command()
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
    watch: Annotated[bool, typer.Option("--watch/--no-watch", help="Follow the dates")] = True,
    timeout: Annotated[float, typer.Option(help="Stop following after this many seconds")] = 7
    * 86400,
    data_dir: DataDirOpt = None,
    api_url: ApiOpt = None,
    user: UserOpt = None,
    token: TokenOpt = None,
) -> None:
    """Start a backfill of a round (one topup-standard run per unprocessed date)."""
    import getpass

    from topup_cli.runlogs import watch_children

    definition = _definition(workflow, version)
    owner = _user_tags(user, token, data_dir)
    target = _target(data_dir, api_url)
    params: dict[str, Any] = {
        "round": round,
        "site": site or target.default_site,
        "workflow": definition.name,
        "workflow_version": definition.version,
    }
    if approve:
        # the reset of each verified date; the round's submission is always asked for
        params.update(approve_reset=True, approved_by=approved_by or getpass.getuser())
    for name, value in (
        ("dates", dates),
        ("max_dates", max_dates),
        ("poll_seconds", poll_seconds),
        ("max_wait_minutes", max_wait_minutes),
    ):
        if value is not None:
            params[name] = value
    # As `run` does: refused here (exit 2) instead of a flow run that fails at its start.
    _checked(_definition("backfill", None), params)
    if dates:  # the dates asked for by name; the flow itself skips processed ones
        _date_safe(round, dates.split(","), params["site"], data_dir, rerun=None)
    try:
        with target.client() as client:
            fr = start_run(client, "backfill/backfill", params, tags=owner)
            console.print(f"started backfill {fr.name} ({fr.id})")
            console.print(f"Prefect UI: {target.run_url(fr.id)}")
            if not watch:
                return
            final = watch_children(client, fr.id, console, timeout)
    except CliError as exc:
        raise _fail(str(exc)) from None
    except (OSError, httpx.HTTPError) as exc:  # connection refused and friends
        raise _fail(f"cannot reach the Prefect API at {target.api_url}: {exc}") from None
    message = final.state.message if final.state is not None else None
    console.print(f"backfill {fr.name}: {final.state_name}" + (f" - {message}" if message else ""))
    raise typer.Exit(0 if final.state is not None and final.state.is_completed() else 1)


# --------------------------------------------------------------------------- token
def _token_db(data_dir: Path | None) -> str:
    """The facade's database: the running stack's, else TOPUP_DATABASE_URL, else the data dir's."""
    from topup_cli.state import read_state

    settings = _settings(data_dir)
    state = read_state(settings.state_file)
    if state is not None and state.topup_database_url:
        return state.topup_database_url
    env = os.environ.get("TOPUP_DATABASE_URL")
    if env:
        return env
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{settings.data_dir.resolve() / 'topup.db'}"


def _token_session(data_dir: Path | None) -> Any:
    from sqlmodel import Session

    from facade.db import create_tables, make_engine

    engine = make_engine(_token_db(data_dir))
    create_tables(engine)
    return Session(engine)


def _check_user(user: str) -> None:
    """Refuse a malformed name before touching the database: a typo in `revoke` must not
    read as "revoked 0 token(s)", and a trailing newline must not create a user."""
    from facade.tokens import USER_NAME_RE

    if not USER_NAME_RE.fullmatch(user):
        raise _fail("user name must be 1-64 characters of letters, digits, _ . @ -", 2)


@token_app.command("create")
def token_create(
    user: Annotated[str, typer.Option("--user", help="User name the token acts as")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the user the admin role")] = False,
    label: Annotated[str, typer.Option(help="What the token is for")] = "",
    data_dir: DataDirOpt = None,
) -> None:
    """Create a token for USER (created if new) and print it once."""
    from facade.tokens import issue_token

    _check_user(user)
    with _token_session(data_dir) as session:
        try:
            token = issue_token(session, user, admin=admin, label=label)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    user: Annotated[str, typer.Option("--user")],
    prefix: Annotated[str | None, typer.Option(help="Only the token starting with this")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke USER's tokens (all, or the one with PREFIX)."""
    from facade.tokens import revoke_tokens

    _check_user(user)
    with _token_session(data_dir) as session:
        count = revoke_tokens(session, user, prefix)
    typer.echo(f"revoked {count} token(s)")


if __name__ == "__main__":
    app()
