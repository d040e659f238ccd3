"""Realistic time: one date (250624, 19 runs) with job durations as at IHEP, compressed.

The sim's realistic-time mode (``sim.faults``: ``realistic_time``, ``time_compression``,
``slow_runs``) gives every batch job 10-25 minutes (fixed per stage and run) and one slow run
per date 45 minutes, divided by the compression factor; the flow polls every 30 s divided by
the same factor, as the real poll interval would be. Reported:

- the date's wall time against the critical path of its jobs (the limit: the six batch
  stages run one after the other, the jobs of a stage side by side, so the limit is the sum
  over stages of the longest job);
- per batch stage, how long after its last output (the last job's end) the step noticed
  completion (the end of the first poll that started after it).

Every figure is also given scaled back to real minutes (× compression).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.flowrun import DATE, FLOW_PARAMETERS, _task_windows
from bench.results import BenchResult, Figure
from bench.site_env import fresh_site, prefect_in_process, ssh_pair

BATCH_STEPS = ("step1_1", "step2_1", "step3_1", "step4_1", "step5_1", "step6_1")
REAL_POLL_SECONDS = 30.0


def _jobs(root: Path) -> list[dict[str, float]]:
    """Every finished batch job of the tree: submission and end times (epoch seconds)."""
    out = []
    for job_dir in sorted((root / ".sim/batch/jobs").iterdir()):
        state = job_dir / "state"
        try:
            spec = json.loads((job_dir / "spec.json").read_text())
            done = state.read_text().strip() == "C"
        except (OSError, ValueError):
            continue
        if done:
            out.append({"submitted": float(spec["time"]), "end": state.stat().st_mtime})
    return out


def _noticed(commands: list[Any], step: str, last_end: float, task_end: float) -> float:
    """End of the first command of ``step`` that started after ``last_end`` (a poll)."""
    for c in commands:
        if c.step != step or c.kind not in ("poll", "run", "script"):
            continue
        start = c.started_at.timestamp()
        if start >= last_end:
            return start + c.duration
    return task_end


def _one(pair: Any, compression: float, say: Callable[[str], None]) -> dict[str, Any]:
    from flows.topup_standard import topup_standard
    from store import repository

    with fresh_site(pair) as site:
        runs = site.sim.runs("round18", DATE)
        slow = runs[len(runs) // 2]
        site.sim.set_faults(realistic_time=True, time_compression=compression, slow_runs=[slow])
        params = {
            **FLOW_PARAMETERS,
            "poll_seconds": max(REAL_POLL_SECONDS / compression, 0.05),
            "max_wait_minutes": 30.0,
        }
        t0 = time.time()
        state = topup_standard(date=DATE, **params, return_state=True)
        wall = time.time() - t0
        if not state.is_completed():
            raise RuntimeError(f"realtime flow did not complete: {state.message}")
        run_id = state.result()["flow_run_id"]
        jobs = _jobs(site.sim.root)
        tasks = {name: (start, end) for name, start, end in _task_windows(run_id)}
        commands = repository.transcript(run_id)
    stages = []
    for step in BATCH_STEPS:
        start, end = tasks[step]
        mine = [j for j in jobs if start <= j["submitted"] <= end]
        if not mine:
            raise RuntimeError(f"no batch job found for {step}")
        longest = max(j["end"] - j["submitted"] for j in mine)
        last_end = max(j["end"] for j in mine)
        noticed = _noticed(commands, step, last_end, end)
        stages.append(
            {
                "stage": step,
                "jobs": len(mine),
                "longest job s": round(longest, 2),
                "batch phase s": round(last_end - min(j["submitted"] for j in mine), 2),
                "noticed after last output s": round(noticed - last_end, 3),
                "step wall s": round(end - start, 2),
            }
        )
    limit = sum(s["longest job s"] for s in stages)
    say(f"    wall {wall:.1f}s, critical path {limit:.1f}s (slow run {slow})")
    return {"wall": wall, "limit": limit, "stages": stages}


def run(repeat: int, say: Callable[[str], None], compression: float = 600.0) -> BenchResult:
    result = BenchResult(name="realtime", title="Realistic time (compressed)", repeat=repeat)
    samples: list[dict[str, Any]] = []
    with ssh_pair() as pair, prefect_in_process():
        for i in range(repeat):
            say(f"  run {i + 1}/{repeat}, compression ×{compression:g}")
            samples.append(_one(pair, compression, say))
    walls = [s["wall"] for s in samples]
    limits = [s["limit"] for s in samples]
    poll = max(REAL_POLL_SECONDS / compression, 0.05)
    result.add(Figure(label="date wall time", unit="s", samples=walls,
                      note="compressed jobs; real equivalent under Conditions"))  # fmt: skip
    result.add(Figure(label="critical path of the jobs (the limit)", unit="s", samples=limits,
                      note="Σ over the 6 batch stages of the longest job"))  # fmt: skip
    result.add(
        Figure(
            label="wall time ÷ critical path",
            unit="×",
            samples=[w / lim for w, lim in zip(walls, limits, strict=True)],
            note="at this compression; the rest is not compressed (see below)",
        )
    )
    result.add(
        Figure(
            label="time beyond the critical path",
            unit="s",
            samples=[w - lim for w, lim in zip(walls, limits, strict=True)],
            note="non-batch steps (merge, plots, PDFs, reset, DB), queueing, detection",
        )
    )
    notice = [max(st["noticed after last output s"] for st in s["stages"]) for s in samples]
    result.add(
        Figure(
            label="slowest notice of completion after the last output",
            unit="s",
            samples=notice,
            target=f"<= {2 * poll + 1:g}",
            note=f"poll interval {poll:g} s (30 s ÷ {compression:g})",
        )
    )
    result.tables["batch stages (last run)"] = samples[-1]["stages"]
    result.conditions.update(
        compression=compression,
        poll_seconds=poll,
        job_minutes="10-25 per (stage, run); one slow run per date: 45",
        real_equivalent_limit_minutes=round(limits[-1] * compression / 60, 1),
        # The jobs scale with the compression, the rest of the flow does not.
        real_equivalent_wall_minutes=round(
            (limits[-1] * compression + walls[-1] - limits[-1]) / 60, 1
        ),
    )
    result.notes.append(
        "Realistic time: every batch job lasts 10-25 min (fixed per stage and run), one run "
        "of the date 45 min, divided by the compression; the flow polls every 30 s divided by "
        "the same factor. The limit is the sum over the six batch stages (1.1, 2.1, 3.1, 4.1, "
        "5.1, 6.1) of the longest job: stages are sequential, a stage's jobs run side by side. "
        "'noticed after last output' is the end of the first poll of the step that started "
        "after the stage's last job ended. At IHEP the real-equivalent wall time is the limit "
        "plus the uncompressed rest: the batch jobs dominate and the orchestration adds "
        "about one poll interval per stage."
    )
    return result
