"""Profile one in-process flow run (cProfile, wall clock) to find the orchestration overhead.

``python -m bench profile [--date 250626]`` writes ``var/bench/profile-<date>.txt``: the
functions with the largest cumulative time, restricted to the orchestration side (Prefect,
flows, store), and the whole top list.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from collections.abc import Callable
from pathlib import Path

from bench.flowrun import run_flow
from bench.results import RESULTS_DIR
from bench.site_env import fresh_site, prefect_in_process, ssh_pair


def profile(date: str, say: Callable[[str], None], top: int = 60) -> Path:
    with ssh_pair() as pair, prefect_in_process():
        with fresh_site(pair) as site:  # warm-up run: imports, first connections
            run_flow(site, pair, date)
        with fresh_site(pair) as site:
            prof = cProfile.Profile()
            prof.enable()
            m = run_flow(site, pair, date)
            prof.disable()
    say(f"  wall {m.wall:.2f}s, remote {m.remote:.2f}s, waiting {m.waiting:.2f}s")
    out = io.StringIO()
    out.write(
        f"date {date}: wall {m.wall:.2f}s remote {m.remote:.2f}s waiting {m.waiting:.2f}s "
        f"overhead {m.overhead:.2f}s\n\n"
    )
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative")
    for pattern in ("flows/", "store/", "prefect/", ""):
        out.write(f"\n===== cumulative, filter {pattern!r}\n")
        stats.print_stats(pattern, top)
    path = RESULTS_DIR / f"profile-{date}.txt"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())
    return path
