"""Render docs/reliability.md from the scenario records the chaos tests wrote.

Why a renderer and not a hand-written page: every number in the report was measured by the
test that asserted it (``tests/chaos/report.py`` ``record``), so the page cannot drift from
what the suite checks. This script runs nothing itself; it only reads the results file
(``TOPUP_RELIABILITY_RESULTS``, default ``var/reliability/results.jsonl``).

    .venv/bin/pytest -m "chaos or safe_end"
    .venv/bin/python scripts/reliability_report.py [--results FILE] [--output FILE]
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import typer
from rich.console import Console

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:  # run as a plain script from anywhere
    sys.path.insert(0, str(PROJECT_DIR))

from tests.chaos.report import ScenarioRecord, load, results_path  # noqa: E402

GROUPS = {
    "faults": "Injected faults",
    "transient": "Transient vs permanent faults",
    "load": "Load",
    "ha": "High availability (issue 15)",
    "input": "Bad input",
    "security": "Security",
    "safe-end": "Safe end: nothing unverified reaches the offline database",
}
# A line under a group's heading, where its columns mean something of their own.
GROUP_NOTES = {
    "safe-end": (
        "Here *submissions* = real database submissions started (`-sub_switch 1`, counted in "
        "the simulated database's own log), *duplicates* = a part started again without a "
        "person's decision naming the earlier attempt, *rows lost* = database rows of runs "
        "from a failed or set-aside date (must be 0); the ledger rows are in the details. "
        "Measured by `tests/flows/test_safe_end.py` (`pytest -m safe_end`)."
    ),
}
PACKAGES = ("prefect", "fastapi", "fabric", "paramiko", "sqlmodel", "schemathesis", "pytest")
COLUMNS = (
    "scenario",
    "injected",
    "outcome",
    "submissions",
    "duplicates",
    "rows lost",
    "orphans",
    "pass",
)

# The "transient vs permanent" table: what each fault cost and how it ended.
TRANSIENT_COLUMNS = ("fault", "kind", "retries", "time lost (s)", "end state", "pass")
TRANSIENT_INTRO = (
    "Faults of the network and of SFTP, injected with the simulated site's knobs "
    "(sim/sshd.py, sim/netfaults.py). A transient fault is absorbed by the SSH layer's "
    "backoff (0.5, 1, 2, 4, 8 s within `TOPUP_SSH_RETRY_SECONDS`); a permanent one is "
    "reported at once or after that budget. *retries* = attempts made again; *time lost* = "
    "seconds from the first failure to the start of the attempt that succeeded (or to "
    "giving up). Target: a 2 s outage costs less than 5 s."
)

app = typer.Typer(add_completion=False, help=__doc__)


def cell(value: object) -> str:
    """One Markdown table cell: no pipes or line breaks; None shows as a dash."""
    if value is None:
        return "–"
    text = str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text.strip() or "–"


def row(rec: ScenarioRecord) -> str:
    values = (
        rec.scenario,
        rec.injected,
        rec.outcome,
        rec.submissions,
        rec.duplicate_submissions,
        rec.rows_lost,
        rec.orphans,
        "yes" if rec.passed else "**NO**",
    )
    return "| " + " | ".join(cell(v) for v in values) + " |"


def transient_row(rec: ScenarioRecord) -> str:
    lost = None if rec.lost_seconds is None else f"{rec.lost_seconds:.2f}"
    values = (rec.scenario, rec.kind, rec.retries, lost, rec.outcome)
    cells = [cell(v) for v in values] + ["yes" if rec.passed else "**NO**"]
    return "| " + " | ".join(cells) + " |"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def header(records: list[ScenarioRecord], now: datetime) -> list[str]:
    first = min((r.recorded_at for r in records), default=None)
    last = max((r.recorded_at for r in records), default=None)

    def stamp(t: float | None) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "–"

    versions = ", ".join(f"{p} {version(p)}" for p in PACKAGES)
    return [
        "# Reliability report",
        "",
        "What the load, bad-input, security and fault scenarios injected into the real "
        "stack (Prefect server and process worker, the facade over HTTP, the simulated site "
        "behind a real OpenSSH jump host and login node) and the end state each test "
        "measured and asserted. Generated; do not edit by hand.",
        "",
        f"- Generated: {now.strftime('%Y-%m-%d %H:%M UTC')}; scenarios measured "
        f"{stamp(first)} – {stamp(last)}",
        f"- Machine: {socket.gethostname()}, {platform.platform()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"- Versions: {versions}",
        "",
        "Regenerate: run the scenarios, then render this page from their records:",
        "",
        "```bash",
        '.venv/bin/pytest -m "chaos or safe_end"',
        ".venv/bin/pytest tests/remote/test_transient.py tests/flows/test_transient_outage.py "
        "tests/flows/test_required_downloads.py",
        ".venv/bin/python scripts/reliability_report.py",
        "```",
        "",
        "Columns: *submissions* = batch jobs counted in the simulated site's submission log; "
        "*duplicates* = submissions of the same run and stage more than once; *rows lost* = "
        "expected output rows missing at the end; *orphans* = remote processes left behind; "
        "– = not applicable to the scenario.",
    ]


def render(records: list[ScenarioRecord], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    lines = header(records, now)
    passed = sum(r.passed for r in records)
    lines += ["", f"**{passed} of {len(records)} scenarios passed.**"]
    known = [g for g in GROUPS if any(r.group == g for r in records)]
    other = sorted({r.group for r in records} - set(GROUPS))
    for group in [*known, *other]:
        mine = sorted(
            (r for r in records if r.group == group), key=lambda r: (r.recorded_at, r.scenario)
        )
        lines += ["", f"## {GROUPS.get(group, group.capitalize())}", ""]
        columns, render_row = (
            (TRANSIENT_COLUMNS, transient_row) if group == "transient" else (COLUMNS, row)
        )
        if group == "transient":
            lines += [TRANSIENT_INTRO, ""]
        if group in GROUP_NOTES:
            lines += [GROUP_NOTES[group], ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "|".join("---" for _ in columns) + "|")
        lines += [render_row(r) for r in mine]
        details = [r for r in mine if r.details]
        if details:
            lines += ["", "<details><summary>Details</summary>", ""]
            lines += [f"- **{cell(r.scenario)}**: {cell(r.details)}" for r in details]
            lines += ["", "</details>"]
    if not records:
        lines += ["", "No scenario has been recorded yet: run `.venv/bin/pytest -m chaos`."]
    return "\n".join(lines) + "\n"


@app.command()
def main(
    results: Path = typer.Option(None, help="results file (default: TOPUP_RELIABILITY_RESULTS)"),
    output: Path = typer.Option(PROJECT_DIR / "docs" / "reliability.md", help="page to write"),
) -> None:
    """Write the reliability page from the recorded scenario results."""
    source = results or results_path()
    records = load(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(records))
    failed = [r.scenario for r in records if not r.passed]
    console = Console()
    console.print(f"{len(records)} scenarios from {source} → {output}")
    if failed:
        console.print(f"[red]not passed:[/red] {', '.join(failed)}")


if __name__ == "__main__":
    app()
