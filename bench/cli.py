"""``python -m bench [overhead|remote|latency|facade|backfill|report] [--repeat N]``.

With no command every benchmark runs in priority order. Each one stores
``var/bench/<name>.json``; afterwards ``docs/performance.md`` is regenerated from all stored
results (so a single benchmark refreshes its section and keeps the others).
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from bench.results import RESULTS_DIR, BenchResult, load_now, machine

console = Console()
app = typer.Typer(
    help="Benchmarks on the simulated site (not part of the tests).",
    invoke_without_command=True,
    no_args_is_help=False,
)

ORDER = ("remote", "overhead", "latency", "facade", "backfill", "realtime", "ha")
MODULES = {
    "overhead": "bench.overhead",
    "remote": "bench.remote",
    "latency": "bench.latency",
    "facade": "bench.facade_load",
    "backfill": "bench.backfill",
    "realtime": "bench.realtime",
    "ha": "bench.ha_load",
    "sqlite_lock": "bench.sqlite_lock",
}
Repeat = Annotated[int, typer.Option("--repeat", "-n", min=1, help="runs per figure (median)")]


def say(text: str) -> None:
    console.print(text, highlight=False)


def _run(name: str, repeat: int, **options: object) -> BenchResult:
    module = importlib.import_module(MODULES[name])
    runner: Callable[..., BenchResult] = module.run
    say(f"[bold]bench {name}[/bold] (repeat {repeat})")
    before = load_now()
    t0 = time.monotonic()
    result = runner(repeat, say, **options)
    result.seconds = time.monotonic() - t0
    result.conditions = {"load_before": before, "load_after": load_now(), **result.conditions}
    path = result.save()
    for f in result.figures:
        verdict = {True: "[green]meets[/green]", False: "[red]misses[/red]", None: ""}[f.ok]
        base = f" (baseline {f.baseline:g}, ×{f.ratio:.1f})" if f.ratio else ""
        target = f" target {f.target}" if f.target else ""
        say(f"  {f.label}: {f.value:.3g} {f.unit}{base}{target} {verdict}")
    say(f"  → {path.relative_to(RESULTS_DIR.parents[1])} ({result.seconds:.0f}s)")
    return result


def _bench(name: str, repeat: int, **options: object) -> None:
    """One benchmark, then docs/performance.md again from every stored result."""
    _run(name, repeat, **options)
    _report()


def _report() -> None:
    from bench.report import write_report

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "machine.json").write_text(json.dumps(machine(), indent=1) + "\n")
    path = write_report()
    say(f"wrote {path}")


@app.callback()
def main(ctx: typer.Context, repeat: Repeat = 3) -> None:
    """Run every benchmark (when no command is given) and write docs/performance.md."""
    if ctx.invoked_subcommand is None:
        for name in ORDER:
            _run(name, repeat, **({"scale": "full"} if name in ("facade", "backfill") else {}))
        _report()


@app.command()
def overhead(repeat: Repeat = 3) -> None:
    """1. Orchestration overhead of the standard flow, per step."""
    _bench("overhead", repeat)


@app.command()
def remote(repeat: Repeat = 3) -> None:
    """2. Remote commands and SSH sessions per poll cycle and per flow run vs the legacy way."""
    _bench("remote", repeat)


@app.command()
def latency(repeat: Repeat = 3) -> None:
    """3. Start latency: facade POST /start → first step running."""
    _bench("latency", repeat)


@app.command()
def facade(
    repeat: Repeat = 3,
    tasks: Annotated[int, typer.Option(help="facade tasks stored")] = 10_000,
    seconds: Annotated[int, typer.Option(help="seconds per load run")] = 10,
) -> None:
    """4. Facade under load (wrk): progress and task-list reads with many tasks stored."""
    _bench("facade", repeat, tasks=tasks, seconds=seconds)


@app.command()
def backfill(
    repeat: Repeat = 3,
    scale: Annotated[
        str, typer.Option(help="full: 20 dates and 4×5; small: 3 and 2×2; tiny: 2 and 2×1")
    ] = ("full"),
) -> None:
    """5. Backfill of one round's dates and of several rounds vs the sum of single runs."""
    _bench("backfill", repeat, scale=scale)


@app.command()
def realtime(
    repeat: Repeat = 1,
    compression: Annotated[
        float, typer.Option(help="real seconds per simulated second (600: 10 min -> 1 s)")
    ] = 600.0,
    splice: Annotated[
        bool, typer.Option(help="only replace this section of docs/performance.md")
    ] = False,
) -> None:
    """6. Realistic job durations (compressed): a date's wall time vs its critical path."""
    _run("realtime", repeat, compression=compression)
    if splice:
        from bench.report import splice_section

        say(f"updated {splice_section('realtime')}")
    else:
        _report()


@app.command()
def ha(
    repeat: Repeat = 1,
    scale: Annotated[
        str, typer.Option(help="full: 4 rounds x 25 dates; medium: 4 x 5; small: 2 x 3")
    ] = "full",
    seconds: Annotated[int, typer.Option(help="seconds of facade reads (wrk)")] = 10,
    splice: Annotated[
        bool, typer.Option(help="only replace this section of docs/performance.md")
    ] = False,
) -> None:
    """7. HA stack vs single server: runs started per minute, facade reads through HAProxy."""
    _run("ha", repeat, scale=scale, seconds=seconds)
    if splice:
        from bench.report import splice_section

        say(f"updated {splice_section('ha')}")
    else:
        _report()


@app.command("sqlite_lock")
def sqlite_lock(
    repeat: Repeat = 1,
    threads: Annotated[int, typer.Option(help="concurrent writers (flow runs)", min=1)] = 8,
    cycles: Annotated[int, typer.Option(help="pause/resume cycles per writer", min=1)] = 15,
) -> None:
    """8. SQLite "database is locked" on the embedded server: Prefect's set-up vs the stack's."""
    _run("sqlite_lock", repeat, threads=threads, cycles=cycles)
    from bench.report import splice_section

    say(f"updated {splice_section('sqlite_lock')}")


@app.command()
def report() -> None:
    """Regenerate docs/performance.md from the stored results."""
    _report()


@app.command()
def profile(date: Annotated[str, typer.Option(help="date of the default site")] = "250626") -> None:
    """Profile one flow run (cProfile) into var/bench/profile-<date>.txt (shown in the report)."""
    from bench.profile_flow import profile as run_profile

    say(f"wrote {run_profile(date, say)}")
