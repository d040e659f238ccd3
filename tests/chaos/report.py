"""Outcome records of the chaos, load and fuzz scenarios, rendered into docs/reliability.md.

Why: the reliability report must say, per scenario, what was injected and what the end state
was, measured by the test that asserted it, not written by hand. Each test calls ``record``
after its assertions; ``scripts/reliability_report.py`` renders the collected lines.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS = PROJECT_DIR / "var" / "reliability" / "results.jsonl"


class ScenarioRecord(BaseModel):
    """One scenario's measured end state."""

    group: str = Field(description="faults | transient | load | input | security")
    scenario: str
    injected: str
    outcome: str
    passed: bool = True
    submissions: int | None = Field(None, description="batch submissions counted in the sim log")
    duplicate_submissions: int | None = None
    rows_lost: int | None = Field(None, description="expected output rows missing at the end")
    orphans: int | None = Field(None, description="remote processes left behind")
    details: str = ""
    # "transient vs permanent" scenarios (group "transient"): the fault's kind, how many times
    # the SSH layer or the step tried again, and the run time the fault cost.
    kind: str | None = Field(None, description="transient | permanent")
    retries: int | None = None
    lost_seconds: float | None = None
    recorded_at: float = Field(default_factory=time.time)


def results_path() -> Path:
    return Path(os.environ.get("TOPUP_RELIABILITY_RESULTS", DEFAULT_RESULTS))


def record(**fields: object) -> ScenarioRecord:
    """Append one scenario record (JSON line) to the results file and return it."""
    rec = ScenarioRecord.model_validate(fields)
    path = results_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.write(rec.model_dump_json() + "\n")
    return rec


def load(path: Path | None = None) -> list[ScenarioRecord]:
    """Every record in the results file (the newest per group/scenario wins)."""
    path = path or results_path()
    if not path.exists():
        return []
    latest: dict[tuple[str, str], ScenarioRecord] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = ScenarioRecord.model_validate(json.loads(line))
            latest[(rec.group, rec.scenario)] = rec
    return list(latest.values())
