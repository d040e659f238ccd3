"""Figures, their medians and where they are stored.

Why a model: the report is generated from the stored JSON only, so a figure carries its own
target and verdict, and each bench run records the conditions it was measured under.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

PROJECT_DIR = Path(__file__).resolve().parents[1]
RESULTS_DIR = PROJECT_DIR / "var" / "bench"


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class Figure(BaseModel):
    """One measured number: the median of ``samples``, checked against ``target``."""

    label: str
    unit: str
    samples: list[float]
    target: str | None = None  # e.g. "<= 50"
    baseline: float | None = None  # median of the baseline, measured in the same run
    note: str = ""
    higher_is_better: bool = False

    @property
    def value(self) -> float:
        return median(self.samples)

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline (>1: better)."""
        if self.baseline is None:
            return None
        better, worse = (
            (self.value, self.baseline) if self.higher_is_better else (self.baseline, self.value)
        )
        return better / worse if worse else None

    @property
    def ok(self) -> bool | None:
        if not self.target:
            return None
        op, _, limit = self.target.partition(" ")
        bound = float(limit)
        return self.value <= bound if op == "<=" else self.value >= bound

    def dump(self) -> dict[str, Any]:
        data = self.model_dump()
        data.update(value=self.value, ratio=self.ratio, ok=self.ok)
        return data


class BenchResult(BaseModel):
    """What one benchmark measured, with the conditions it ran under."""

    name: str
    title: str
    repeat: int
    started: float = Field(default_factory=time.time)
    seconds: float = 0.0
    figures: list[Figure] = Field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    conditions: dict[str, Any] = Field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def save(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        data = self.model_dump(exclude={"figures"})
        data["figures"] = [f.dump() for f in self.figures]
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")
        return path


def load_results(directory: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == "machine.json":
            continue
        out[path.stem] = json.loads(path.read_text())
    return out


def load_now() -> dict[str, float]:
    """Load average and CPU count: the report states how busy the machine was."""
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen, "cpus": os.cpu_count() or 0}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _cmd(argv: list[str]) -> str:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return (res.stdout or res.stderr).strip().splitlines()[0] if res.returncode == 0 else "-"


def machine() -> dict[str, Any]:
    """The machine and the versions that matter for the figures."""
    cpu = "-"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "-"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "versions": {
            d: _version(d)
            for d in ("prefect", "fastapi", "uvicorn", "sqlmodel", "fabric", "paramiko", "httpx")
        },
        "openssh": _cmd(["ssh", "-V"]),
        "wrk": _cmd(["wrk", "--version"]),
    }
