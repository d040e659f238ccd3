"""Realistic-time mode: the durations the site's jobs get (its own stdlib copy of the
formula, run by the site's Python) are the ones ``sim.faults`` computes for the benchmark,
and follow the real distribution: 10-25 min per (stage, run), 45 min for a slow run."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from sim.faults import Faults, realistic_job_seconds
from sim.site import PYTHON


def test_site_and_python_agree_on_the_distribution(sim: Any) -> None:
    faults = sim.set_faults(realistic_time=True, time_compression=600, slow_runs=[85392])
    cases = [(stage, run) for stage in "123456" for run in sim.runs("round18", "250624")]
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from simcommon import faults, "
        "job_seconds; print(json.dumps([job_seconds(faults(), s, r) for s, r in "
        "json.loads(sys.argv[2])]))"
    )
    out = subprocess.run(
        [PYTHON, "-c", script, str(sim.bin_dir), json.dumps(cases)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    site = json.loads(out.stdout)
    ours = [realistic_job_seconds(s, r, faults.model_dump()) for s, r in cases]
    assert site == ours
    minutes = [v * 600 / 60 for v in ours]
    slow = [m for (s, r), m in zip(cases, minutes, strict=True) if r == 85392]
    assert slow == [45.0] * 6
    normal = [m for (s, r), m in zip(cases, minutes, strict=True) if r != 85392]
    assert all(10 <= m <= 25 for m in normal) and max(normal) - min(normal) > 10
    # off by default: job_seconds as before
    assert Faults().realistic_time is False and Faults().job_seconds == 0.2
