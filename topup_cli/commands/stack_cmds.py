"""``topup up | status | down``: start and supervise the stack, look at it, stop it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from topup_cli.commands.common import (
    DataDirOpt,
    console,
    fail,
    settings_for,
)


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

    settings = settings_for(data_dir, prefect_port=prefect_port, facade_port=facade_port, ui=ui)
    try:
        ha_settings = HaSettings() if ha else None
    except ValidationError as exc:
        # Locations and reasons only: the values may be database URLs with a password.
        why = "; ".join(
            f"TOPUP_HA_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"bad HA setting: {why}", code=2) from None
    sup = Supervisor(
        settings, sim=sim, fresh_sim=fresh_sim, say=lambda m: console.print(m), ha=ha_settings
    )
    began = time.monotonic()
    try:
        sup.check_free()
        sup.install_signals()
        state = sup.start()
    except AlreadyRunning as exc:
        raise fail(str(exc)) from None
    except Shutdown:
        console.print("interrupted while starting; stopped")
        raise typer.Exit(130) from None
    except Exception as exc:
        raise fail(f"the stack did not start: {exc}") from None
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


def status(
    data_dir: DataDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable")] = False,
) -> None:
    """Each component of the stack: pid, alive, URL and health. Exit 1 if not all healthy."""
    from topup_cli.control import stack_status

    st = stack_status(settings_for(data_dir).state_file)
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
        table.add_row(c.name, str(c.pid or "-"), _yes(c.alive), _yes(c.healthy), c.url or "")
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


def down(
    data_dir: DataDirOpt = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a clean stop")] = 120.0,
) -> None:
    """Stop the stack started by `topup up` in another shell."""
    from topup_cli.control import stop_stack

    state, left = stop_stack(settings_for(data_dir).state_file, timeout)
    if state is None:
        console.print("no stack to stop")
        return
    if left:
        raise fail(f"processes still alive: {left}")
    console.print(f"stopped the stack of {state.data_dir}")
