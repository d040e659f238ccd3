"""Fault injection for the simulated site.

The faults live in ``<root>/.sim/faults.json``; the site's scripts and batch jobs read the
file at the moment they run (stdlib JSON, the site user cannot import this module), so a
test changes behaviour by rewriting it, without restarting anything. This module is the
typed view of that file for the Python side.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sim.layout import DEFAULT_NOISE_RUNS

STAGES = ("1", "2", "3", "4", "5", "6")
# Database parts of step 8 and their tables (the keys of the db_* faults accept both).
DB_PARTS = {
    "InjSigInterval": "InjSigIntervalCalConst",
    "InjSigTime": "InjSigTimeCalConst",
    "OfflineEvtFilter": "OfflineEvtFilterCalConst",
}


def _stage_map(value: Any) -> dict[str, list[int]]:
    """Accept ``{1: [85383]}`` or ``{"1": ["85383"]}``; keys are batch stages "1".."6"."""
    if not isinstance(value, dict):
        raise ValueError("expected a mapping stage -> runs")
    out: dict[str, list[int]] = {}
    for key, runs in value.items():
        stage = str(key)
        if stage not in STAGES:
            raise ValueError(f"unknown stage {key!r} (expected 1..6)")
        out[stage] = sorted({int(r) for r in runs})
    return out


class Faults(BaseModel):
    """Everything the simulated site can be told to do wrong (or slowly)."""

    model_config = ConfigDict(extra="forbid")

    # Seconds a batch job waits before producing its outputs.
    job_seconds: float = Field(0.2, ge=0)
    # stage -> runs: the job sleeps until hep_rm / stop_jobs.
    never_finish: dict[str, list[int]] = Field(default_factory=dict)
    # stage -> runs: no outputs, the error log shows "*** Break *** segmentation violation".
    fail: dict[str, list[int]] = Field(default_factory=dict)
    # stage -> runs: outputs written with size 0, logs normal.
    empty_output: dict[str, list[int]] = Field(default_factory=dict)
    # stage -> runs: the job crashes: its outputs are left empty (opened, never written), its
    # error log (.bosserr / .err.<id>) gets `crash_line`, its log stops before the end.
    crash: dict[str, list[int]] = Field(default_factory=dict)
    crash_line: str = "terminate called after throwing an instance of 'std::bad_alloc'"
    # stage -> runs: the batch system holds the job (hep_q state H) until hep_rm.
    held: dict[str, list[int]] = Field(default_factory=dict)
    # Jobs write their logs (.bosslog/.bosserr, .out.<id>/.err.<id>) when they START, as a
    # shared filesystem may show them, instead of when they end.
    logs_at_start: bool = False
    # DataValid/genJob.sh (step 2.1) submits one array per run, as the real generator does:
    # `boss.condor -g offlinerun -n N rec{run}_'%{ProcId}'` (one cluster, procs 0..N-1).
    array_jobs: bool = False
    # run -> interval value of the step-1 job (all three fields), or [before, from_db, after].
    ist: dict[str, int | list[int]] = Field(default_factory=dict)
    # Dates whose step-1 jobs also write Interval_run0.png.
    interval_run0: list[str] = Field(default_factory=list)
    # script name (genJob.sh, mergeHist.sh, reset.sh, add.sh, hadd, root, convert, ...) -> sleep
    # seconds before it does anything.
    slow: dict[str, float] = Field(default_factory=dict)
    # script name -> exit status it returns at once (before doing anything).
    script_exit: dict[str, int] = Field(default_factory=dict)
    # script name -> text printed on stdout when it starts (e.g. "ccompare/a.out").
    script_output: dict[str, str] = Field(default_factory=dict)
    # hep_container exits with this status after running its commands.
    container_exit: int | None = None
    # Recorded for the CLI, which applies it to the running sshd pair (SshPair.set_sftp_fail).
    sftp_fail: bool = False
    # Runs in which the 50 Hz search (step 3) and the ETS-cut search (step 5) find windows.
    noise_runs: list[int] = Field(default_factory=lambda: list(DEFAULT_NOISE_RUNS))
    # Runs whose step-2 ntuples grow in chunks over grow_seconds instead of appearing at once.
    growing: list[int] = Field(default_factory=list)
    grow_seconds: float = Field(1.0, ge=0)
    # Seconds one `root -q -b -l drawcheck.c(run)` takes.
    draw_seconds: float = Field(0.2, ge=0)
    # Replaces the legacy per-run `sleep 1` / `sleep 2` of 01go.sh and the genJob.sh scripts.
    pause_seconds: float = Field(0.0, ge=0)
    # Name of the shield file the ETS-cut job (step 5) writes for a run with windows; doc5's
    # C++ writes shield{run}.txt, its prose says shield_run{run}.txt.
    ets_shield_name: str = Field(
        "shield{run}.txt", pattern=r"^shield[A-Za-z0-9_.-]*\{run\}[A-Za-z0-9_.-]*\.txt$"
    )
    # --- database submissions (`genInsertCmd.sh ... -sub_switch 1`, sim/scripts/bin/simdb.py).
    # Part (InjSigInterval, InjSigTime, OfflineEvtFilter) or table name -> rows inserted before
    # the process kills itself with SIGKILL (exit 137, no final line, no "end" record).
    db_kill_after_rows: dict[str, int] = Field(default_factory=dict)
    # Same keys -> rows inserted before the submission exits 1 with a database error.
    db_fail_after_rows: dict[str, int] = Field(default_factory=dict)
    # Realistic time (issue 13): instead of job_seconds, a job of stage S for run R lasts
    # 10-25 minutes (fixed per (S, R)), a run in slow_runs 45 minutes, all divided by
    # time_compression (300: a 10-minute job takes 2 s).
    realistic_time: bool = False
    time_compression: float = Field(300.0, gt=0)
    slow_runs: list[int] = Field(default_factory=list)

    @field_validator("db_kill_after_rows", "db_fail_after_rows", mode="before")
    @classmethod
    def _db_parts(cls, v: Any) -> dict[str, int]:
        if not isinstance(v, dict):
            raise ValueError("expected a mapping part or table name -> rows")
        out: dict[str, int] = {}
        for name, rows in v.items():
            if str(name) not in DB_PARTS and str(name) not in DB_PARTS.values():
                raise ValueError(f"unknown database part {name!r} (expected one of {DB_PARTS})")
            if int(rows) < 0:
                raise ValueError("rows must be >= 0")
            out[str(name)] = int(rows)
        return out

    @field_validator("never_finish", "fail", "empty_output", "crash", "held", mode="before")
    @classmethod
    def _stages(cls, v: Any) -> dict[str, list[int]]:
        return _stage_map(v)

    @field_validator("ist", mode="before")
    @classmethod
    def _ist(cls, v: Any) -> dict[str, int | list[int]]:
        out: dict[str, int | list[int]] = {}
        for run, value in dict(v).items():
            if isinstance(value, list | tuple):
                if len(value) != 3:
                    raise ValueError("an IST list holds [before, from_db, after]")
                out[str(int(run))] = [int(x) for x in value]
            else:
                out[str(int(run))] = int(value)
        return out

    @field_validator("crash_line")
    @classmethod
    def _line(cls, v: str) -> str:
        if "\n" in v or "\x00" in v or not v.strip():
            raise ValueError("crash_line is one non-empty line")
        return v

    @field_validator("interval_run0", mode="before")
    @classmethod
    def _dates(cls, v: Any) -> list[str]:
        return [str(d) for d in v]

    @field_validator("noise_runs", "growing", "slow_runs", mode="before")
    @classmethod
    def _runs(cls, v: Any) -> list[int]:
        return sorted({int(r) for r in v})


REAL_JOB_MINUTES = (10.0, 25.0)
SLOW_JOB_MINUTES = 45.0


def realistic_job_seconds(stage: str, run: int | None, faults: dict[str, Any]) -> float:
    """The duration a job gets in realistic-time mode (same formula as the site's
    ``simcommon.job_seconds``: a fixed fraction per (stage, run) from its sha256)."""
    low, high = REAL_JOB_MINUTES
    digest = hashlib.sha256(f"{stage}:{run}".encode()).hexdigest()
    minutes = low + (high - low) * int(digest[:8], 16) / 0xFFFFFFFF
    if run is not None and run in set(faults.get("slow_runs") or ()):
        minutes = SLOW_JOB_MINUTES
    return minutes * 60.0 / float(faults.get("time_compression") or 300.0)


def faults_path(root: Path) -> Path:
    return Path(root) / ".sim" / "faults.json"


def read_faults(root: Path) -> Faults:
    path = faults_path(root)
    if not path.exists():
        return Faults()
    return Faults.model_validate_json(path.read_text())


def write_faults(root: Path, faults: Faults) -> None:
    """Replace faults.json atomically (a job reading it never sees half a file)."""
    path = faults_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(faults.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".faults.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def update_faults(root: Path, **changes: Any) -> Faults:
    """Merge ``changes`` into the current faults (validated) and write them."""
    current = read_faults(root).model_dump()
    current.update(changes)
    faults = Faults.model_validate(current)
    write_faults(root, faults)
    return faults


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from the CLI; the value is JSON when it parses, else a string."""
    if "=" not in text:
        raise ValueError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key not in Faults.model_fields:
        raise ValueError(f"unknown fault {key!r}; known: {', '.join(sorted(Faults.model_fields))}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
