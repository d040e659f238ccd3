"""The demo: the whole 21-step workflow for one date on the simulated site, through the real
stack, then where to look.

    python -m topup_cli.demo [--exit] [--date 250624] [--data-dir var]

What runs: a fresh simulated site (tree + real sshd jump host and login node on loopback),
a Prefect server with its UI, ``prefect deploy --all``, a process worker, and the facade;
then one ``topup-standard`` run (the reset of the verified date approved up front, short
batch polling) started through the deployment, followed step by step, and the round's
``submit-constants`` run (database submission; the simulated history dates, processed before
the ledger existed, are included by the demo's operator, named ``demo``). Afterwards it
prints the Prefect UI (runs, logs, artifacts, PDF links), the facade's ``/docs`` and the
downloaded PDFs. On a terminal the stack stays up until Ctrl-C; with ``--exit`` or without
a terminal everything is stopped and the exit status says whether the run completed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from flows.definitions import load
from steps import download_folders
from topup_cli.api import Target, start_run
from topup_cli.progress import PauseRequest, RunWatcher, prompt_answer
from topup_cli.settings import CliSettings
from topup_cli.supervisor import AlreadyRunning, Shutdown, Supervisor

DEPLOYMENT = "topup-standard/topup-standard-1.2.0"
SUBMIT_DEPLOYMENT = "submit-constants/submit-constants"
console = Console(highlight=False, soft_wrap=True)


def demo(
    date: Annotated[str, typer.Option(help="Date to validate")] = "250624",
    round: Annotated[str, typer.Option("--round", help="Its round")] = "round18",
    exit_after: Annotated[
        bool, typer.Option("--exit", help="Stop the stack after the run, even on a terminal")
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Stack data dir (default var/)")] = None,
    poll_seconds: Annotated[float, typer.Option(help="Batch polling interval")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Give up on the run after (s)")] = 1800,
) -> None:
    """Run the demo (see the module docstring)."""
    settings = CliSettings(**({"data_dir": data_dir} if data_dir else {}))
    sup = Supervisor(settings, sim=True, fresh_sim=True, say=lambda m: console.print(m))
    try:
        sup.check_free()
    except AlreadyRunning as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    sup.install_signals()
    began = time.monotonic()
    code = 1
    try:
        state = sup.start()
        console.print(f"[green]stack up[/] in {time.monotonic() - began:.1f}s")
        target = Target(state.api_url, state)
        definition = load("topup-standard", "1.2.0")
        params = {
            "date": date,
            "round": round,
            "site": state.default_site,
            "workflow_version": definition.version,
            "approve_reset": True,
            "approved_by": "demo",
            "poll_seconds": poll_seconds,
            "max_wait_minutes": 10.0,
        }
        with target.client() as client:
            run_began = time.monotonic()
            flow_run = start_run(client, DEPLOYMENT, params, name=f"demo-{round}-{date}")
            console.print(f"started flow run {flow_run.name} ({flow_run.id})")
            watcher = RunWatcher(
                client,
                flow_run.id,
                definition,
                console,
                answer=prompt_answer(console) if console.is_terminal else None,
                ui_run_url=target.run_url(flow_run.id),
            )
            final = watcher.watch(timeout)
            ok = final.state is not None and final.state.is_completed()
            if ok:
                console.rule("the round's database submission")
                submission = start_run(
                    client,
                    SUBMIT_DEPLOYMENT,
                    {
                        "round": round,
                        "site": state.default_site,
                        "approve_db_submit": True,
                        "approved_by": "demo",
                    },
                    name=f"demo-{round}-submit-constants",
                )
                console.print(f"started flow run {submission.name} ({submission.id})")
                sub_final = RunWatcher(
                    client,
                    submission.id,
                    load("submit-constants"),
                    console,
                    answer=prompt_answer(console) if console.is_terminal else demo_operator,
                    ui_run_url=target.run_url(submission.id),
                ).watch(timeout)
                ok = sub_final.state is not None and sub_final.state.is_completed()
                if sub_final.state is not None:
                    console.print(
                        f"submission {sub_final.state_name}: {sub_final.state.message or ''}"
                    )
        elapsed = time.monotonic() - run_began
        folder = download_folders.folder(Path(state.downloads_dir), str(flow_run.id))
        pdfs = sorted(folder.glob("*.pdf"))
        console.rule("where to look")
        console.print(
            f"run {final.state_name} in {elapsed:.1f}s (demo total {time.monotonic() - began:.1f}s)"
        )
        if watcher.first_step_at is not None:
            console.print(
                f"first step seen {watcher.first_step_at - run_began:.1f}s after the start"
            )
        console.print(f"Prefect UI, this run (logs, task runs): {target.run_url(flow_run.id)}")
        console.print(
            f"Prefect UI, artifacts (progress, files, PDF links): {target.ui_url}/artifacts"
        )
        console.print(f"facade API docs: {state.facade_url}/docs")
        console.print(f"logs of the stack: {state.log_dir}")
        if state.notifications:
            console.print(f"notifications: {escape(state.notifications)}")
        console.print(f"downloaded PDFs ({len(pdfs)}) in {folder}:")
        for pdf in pdfs:
            console.print(f"  {pdf}")
        code = 0 if ok and pdfs else 1
        if code and not ok:
            console.print(
                f"[red]the run did not complete: {final.state.message if final.state else ''}[/]"
            )
        if code == 0 and console.is_terminal and not exit_after:
            console.print("the stack stays up: press Ctrl-C to stop it")
            sup.supervise()
    except Shutdown:
        console.print("interrupted")
        code = 130
    except Exception as exc:
        console.print(f"[red]the demo failed:[/] {type(exc).__name__}: {exc}")
        code = 1
    finally:
        console.print("stopping the stack ...")
        clean = sup.stop()
        console.print("stopped" + ("" if clean else " (some processes had to be killed)"))
    raise typer.Exit(code)


def demo_operator(request: PauseRequest) -> dict[str, Any] | None:
    """The demo's stand-in operator, named ``demo`` in every record: includes the simulated
    history dates (processed before the ledger existed) in the submission, then approves the
    three parts (an include lifts the pre-approval, so each is asked); any other question
    waits for a person in the UI."""
    if request.key.startswith("step8-range"):
        console.print("[yellow]the demo's operator includes the history runs of the sim[/]")
        return {
            "decision": "include",
            "name": "demo",
            "note": "simulated history dates, processed before the ledger existed",
        }
    if request.key.startswith("step8-approve"):
        console.print(f"[yellow]the demo's operator approves {request.key}[/]")
        return {"decision": "approve", "name": "demo", "note": "demo: dry run shown above"}
    return None


def main() -> None:
    typer.run(demo)


if __name__ == "__main__":
    sys.exit(main())
