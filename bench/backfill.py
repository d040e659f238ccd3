"""Figure 5: backfill — 20 dates of one round, and 4 rounds × 5 dates — against the sum of
single runs of the same dates.

Single runs: each date alone, one ``topup-standard`` flow run after the other, on a fresh
tree. Backfill: on another fresh tree, one ``backfill`` flow run per round (rounds run side by
side in threads of this process, as a worker would run their flow-run processes side by side;
dates within a round stay sequential because of the round slot). Ratio = Σ single ÷ backfill.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.flowrun import FLOW_PARAMETERS
from bench.results import BenchResult, Figure, median
from bench.site_env import fresh_site, prefect_in_process, ssh_pair
from sim.layout import generated_layout

# scale -> ((rounds, dates per round), ...), runs per date
SCALES = {
    "full": (((1, 20), (4, 5)), 5),
    "small": (((1, 3), (2, 2)), 5),
    "tiny": (((1, 2), (2, 1)), 2),  # a smoke check of the benchmark itself
}


def _singles(pair, layout, say: Callable[[str], None]) -> float:
    from flows.topup_standard import topup_standard

    total = 0.0
    with fresh_site(pair, layout):
        for rnd in layout.rounds:
            for spec in rnd.dates:
                t0 = time.monotonic()
                state = topup_standard(
                    date=spec.date, round=rnd.name, **FLOW_PARAMETERS, return_state=True
                )
                spent = time.monotonic() - t0
                if not state.is_completed():
                    raise RuntimeError(f"single run {rnd.name}/{spec.date}: {state.message}")
                total += spent
        say(f"    single runs: Σ {total:.1f}s")
    return total


def _backfills(pair, layout, say: Callable[[str], None]) -> float:
    from flows.backfill import backfill

    errors: list[str] = []

    def one(round_name: str, dates: int) -> None:
        try:
            state = backfill(
                round=round_name, max_dates=dates, **_backfill_params(), return_state=True
            )
            if not state.is_completed():
                errors.append(f"{round_name}: {state.message}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{round_name}: {type(exc).__name__}: {exc}")

    with fresh_site(pair, layout):
        # Each thread runs in a copy of this context: the Prefect settings (API URL, result
        # storage) are context variables, which new threads do not inherit.
        threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(one, r.name, len(r.dates)),
                name=f"backfill-{r.name}",
            )
            for r in layout.rounds
        ]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    if errors:
        raise RuntimeError("backfill failed: " + "; ".join(errors))
    say(f"    backfill: {wall:.1f}s")
    return wall


def _backfill_params() -> dict[str, Any]:
    return {k: v for k, v in FLOW_PARAMETERS.items()}


def run(repeat: int, say: Callable[[str], None], scale: str = "full") -> BenchResult:
    result = BenchResult(name="backfill", title="Backfill", repeat=repeat)
    rows = []
    with ssh_pair() as pair, prefect_in_process():
        scenarios, runs_per_date = SCALES[scale]
        for rounds, dates in scenarios:
            layout = generated_layout(
                rounds=rounds, dates_per_round=dates, runs_per_date=runs_per_date
            )
            label = f"{rounds} round(s) × {dates} dates"
            singles, fills = [], []
            for i in range(repeat):
                say(f"  {label}, run {i + 1}/{repeat}")
                singles.append(_singles(pair, layout, say))
                fills.append(_backfills(pair, layout, say))
            result.add(
                Figure(
                    label=f"backfill wall time, {label}",
                    unit="s",
                    samples=fills,
                    baseline=median(singles),
                    note="baseline: Σ of single runs of the same dates, same run",
                )
            )
            rows.append({"scenario": label, "runs per date": runs_per_date})
    result.tables["scenarios"] = rows
    result.conditions["scale"] = scale
    return result
