"""``topup transcript``: a run's remote commands from the outputs store, as a table or JSON
(the JSON is what ``topup-sim replay`` reads)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from steps.remote.transcript import ExportedCommand, TranscriptExport
from store import repository


def export(flow_run_id: str, url: str | None = None) -> TranscriptExport:
    """The stored transcript of a run (empty ``commands`` if none was recorded)."""
    site = repository.transcript_site(flow_run_id, url)
    rows = repository.transcript(flow_run_id, url)
    return TranscriptExport(
        flow_run_id=flow_run_id,
        site=site.site if site else "",
        login=site.login if site else "",
        paths=dict(site.paths) if site else {},
        commands=[ExportedCommand.model_validate(r.model_dump()) for r in rows],
    )


def render(t: TranscriptExport, console: Console, full: bool = False) -> None:
    table = Table(title=f"remote commands of {t.flow_run_id} on {t.site or '?'} ({t.login})")
    for col in ("#", "step", "kind", "command", "cwd", "exit", "s", "out B"):
        table.add_column(col, overflow="fold")
    failed = 0
    for i, c in enumerate(t.commands, 1):
        text = c.text if full else (c.what or c.text.split("\n", 1)[0])[:100]
        exit_ = c.error.split(":", 1)[0] if c.exit_code is None else str(c.exit_code)
        bad = c.exit_code not in (0, None) or bool(c.error)
        failed += bad
        style = "red" if bad else ""
        table.add_row(
            str(i), c.step, c.kind, text, c.cwd, exit_, f"{c.duration:.2f}",
            str(c.stdout_bytes), style=style,
        )  # fmt: skip
        if bad and c.excerpt:
            table.add_row("", "", "", f"[dim]{c.excerpt[-400:]}[/]", "", "", "", "")
    console.print(table)
    console.print(f"{len(t.commands)} commands, {failed} failed or without status")
