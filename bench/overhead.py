"""Figure 1: orchestration overhead of the standard flow, per step.

Overhead = flow wall time − time in remote actions (commands, the SSH session, downloads) −
poll sleeps, divided by the definition's steps (20 in topup-standard 1.2.0, which ends
after step 7; the database submission is its own flow). What is left is Prefect (task runs, states, results),
the recording of outputs, logging and the steps' own Python work. Per step, the same split is
made inside each task run's window (Prefect's start/end times).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.flowrun import DATE, FlowMeasure, run_flow
from bench.results import BenchResult, Figure, median
from bench.site_env import fresh_site, prefect_in_process, ssh_pair
from flows.definitions import load

# the default topup-standard definition's steps (each one task run)
STEPS = len(load("topup-standard").steps)
TARGET_MS = 50


def measure_flows(
    repeat: int, say: Callable[[str], None], engines: tuple[str, ...] = ("new",)
) -> dict[str, list[FlowMeasure]]:
    """``repeat`` full runs per engine ("new", "legacy"), alternating, each on a fresh tree,
    all against one Prefect server."""
    from contextlib import nullcontext

    from bench.legacy import legacy_engine

    out: dict[str, list[FlowMeasure]] = {e: [] for e in engines}
    with ssh_pair() as pair, prefect_in_process():
        for i in range(repeat):
            for engine in engines:
                legacy = engine == "legacy"
                with fresh_site(pair) as site, legacy_engine() if legacy else nullcontext():
                    m = run_flow(site, pair)
                say(
                    f"  {engine} run {i + 1}/{repeat}: wall {m.wall:.2f}s, remote "
                    f"{m.remote:.2f}s, waiting {m.waiting:.2f}s, overhead {m.overhead:.2f}s, "
                    f"{m.commands} commands, {m.sessions} sessions"
                )
                out[engine].append(m)
    return out


def figures(result: BenchResult, runs: list[FlowMeasure]) -> None:
    per_step_ms = [1000 * m.overhead / STEPS for m in runs]
    result.add(
        Figure(
            label="orchestration overhead per step",
            unit="ms",
            samples=per_step_ms,
            target=f"<= {TARGET_MS}",
            note=f"(wall − remote − poll sleeps) / {STEPS}, date {DATE} (19 runs)",
        )
    )
    result.add(Figure(label="flow wall time", unit="s", samples=[m.wall for m in runs]))
    result.add(Figure(label="time in remote actions", unit="s", samples=[m.remote for m in runs]))
    result.add(Figure(label="poll sleeps", unit="s", samples=[m.waiting for m in runs]))
    steps: dict[str, list] = {}
    for m in runs:
        for t in m.steps:
            steps.setdefault(t.step, []).append(t)
    result.tables["per step (median over runs, ms)"] = [
        {
            "step": name,
            "task wall": round(1000 * median([t.wall for t in ts]), 1),
            "remote": round(1000 * median([t.remote for t in ts]), 1),
            "poll sleeps": round(1000 * median([t.waiting for t in ts]), 1),
            "rest (in task)": round(1000 * median([t.rest for t in ts]), 1),
        }
        for name, ts in steps.items()
    ]
    in_tasks = [sum(t.wall for t in m.steps) for m in runs]
    result.add(
        Figure(
            label="flow time outside task runs",
            unit="s",
            samples=[m.wall - s for m, s in zip(runs, in_tasks, strict=True)],
            note="flow start/end, slot, recording and state changes between the task runs",
        )
    )
    result.add(
        Figure(
            label="engine teardown after Completed",
            unit="s",
            samples=[m.teardown for m in runs],
            note="not in the wall time: the run is final; Prefect joins its heartbeat thread",
        )
    )


def run(repeat: int, say: Callable[[str], None]) -> BenchResult:
    result = BenchResult(name="overhead", title="Orchestration overhead", repeat=repeat)
    figures(result, measure_flows(repeat, say)["new"])
    result.notes.append(
        "What the overhead is made of: `python -m bench profile` profiles one flow run (see the "
        "profile section below): Prefect's task engine (task-run creation, state events, "
        "result persistence, API log shipping) and the outputs-store transaction per step "
        "(`store/repository.py`, SQLite WAL with synchronous=NORMAL). Artifacts (a table/link "
        "artifact per step, the progress artifact at most every 5 s) are sent by a background "
        "thread (`flows/artifact_sender.py`), flushed before pauses and at the end of the run. "
        "The wall time ends when Prefect records the run Completed; the flow-run process then "
        "still joins Prefect's heartbeat thread (up to 1 s, shown separately). Opening each "
        "command's SSH channel counts as overhead here (the hook times the command itself): "
        "it took ~44 ms through the jump host until TCP_NODELAY was set on the connection "
        "(Nagle's algorithm against delayed ACKs) and takes ~0.5 ms since, which took the "
        "overhead from 423 to 89 ms per step before the teardown was split off."
    )
    return result
