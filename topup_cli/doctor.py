"""Rendering and site resolution for ``topup doctor`` (the checks live in ``steps.doctor``)."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from steps.doctor.model import DoctorReport
from topup_cli.settings import CliSettings
from topup_cli.state import read_state

STYLE = {"pass": "green", "warn": "yellow", "fail": "red"}


def resolve_site(settings: CliSettings, site: str | None, sites_dir: Path | None) -> str:
    """The site name to check, and ``TOPUP_SITES_DIR`` set as the worker has it.

    Order: ``--sites-dir``, then ``$TOPUP_SITES_DIR``, then the running stack's sites dir;
    the site defaults to the stack's default site, else ``default``.
    """
    state = read_state(settings.state_file)
    if sites_dir is not None:
        os.environ["TOPUP_SITES_DIR"] = str(sites_dir)
    elif not os.environ.get("TOPUP_SITES_DIR") and state is not None:
        os.environ["TOPUP_SITES_DIR"] = state.sites_dir
    if site:
        return site
    return state.default_site if state is not None else "default"


def render(report: DoctorReport, console: Console, verbose: bool = True) -> None:
    table = Table(title=f"topup doctor: site {report.site!r} ({report.login})", show_lines=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("summary / evidence / fix", overflow="fold")
    for c in report.checks:
        body = [c.summary]
        if verbose or c.status != "pass":
            body += [f"  {e}" for e in c.evidence]
        if c.fix:
            body.append(f"[bold]fix:[/] {c.fix}")
        table.add_row(c.name, f"[{STYLE[c.status]}]{c.status}[/]", "\n".join(body))
    console.print(table)
    n = report.counts()
    verdict = "[green]usable[/]" if report.usable else "[red]NOT usable[/]"
    console.print(f"{verdict}: {n['pass']} pass, {n['warn']} warn, {n['fail']} fail")
