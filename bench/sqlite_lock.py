"""SQLite "database is locked" on the embedded Prefect server, before and after the fix.

Why: an operator's Resume in the UI once failed with "database is locked" while runs were
progressing. The Prefect server on SQLite answers 503 when a write meets a locked database
(SQLITE_BUSY): Prefect's clients retry it, the UI does not. Prefect already opens SQLite in
WAL mode with a 60 s busy timeout, so waiting is not what fails: a deferred transaction that
read and then wants to write after another connection committed gets SQLITE_BUSY at once
(WAL cannot upgrade a stale read snapshot), and that happens only between several
connections of the server's pool.

The load, on a real server started as the stack starts it (``PrefectStack``): threads that,
like flow-run processes and the UI, each cycle flow runs through Running -> Paused ->
Running (the resume) and write batches of logs and task-run states, with raw HTTP requests
(no retry, as the UI). Counted: the answers that are 503 or say "database is locked".

Configurations:

- ``prefect-default``: Prefect's own SQLite set-up (WAL, busy timeout 60 s, transactions
  DEFERRED unless they orchestrate a state);
- ``prefect-timeout-60``: the same with Prefect's documented ``PREFECT_SERVER_DATABASE_TIMEOUT``
  raised to 60 s (it sets sqlite3's busy timeout at connect, which the PRAGMA then overrides);
- ``stack``: what ``topup up`` runs — the same server through ``topup_cli.sqlite_server``,
  every transaction begun IMMEDIATE (it waits for the write lock instead of failing).

    python -m bench sqlite_lock [--threads 8] [--cycles 40]
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.results import BenchResult, Figure
from topup_cli.stack import PrefectStack, StackSettings

# name: (server environment, transactions begun IMMEDIATE)
CONFIGS: dict[str, tuple[dict[str, str], bool]] = {
    "prefect-default": ({}, False),
    # Prefect's documented database timeout, raised: it sets sqlite3's busy timeout at
    # connect, which Prefect's PRAGMA busy_timeout (60 s) then overrides anyway.
    "prefect-timeout-60": ({"PREFECT_SERVER_DATABASE_TIMEOUT": "60"}, False),
    "stack": ({}, True),
}


NOTES = [
    "Each writer thread is one flow run: cycles of Running -> Paused -> Running (the resume), "
    "a task run with two states and a batch of 20 log lines, by raw HTTP without retries, as "
    "the UI sends a Resume. A writer whose flow run is refused 20 times in a row (503) gives "
    "up, so the Prefect-default rows hold fewer requests.",
    "'no answer': the connection failed without an HTTP answer. locked_in_server_log stays 0 "
    "because Prefect filters retryable lock errors out of its log "
    "(PREFECT_SERVER_LOG_RETRYABLE_ERRORS).",
    "prefect-default and prefect-timeout-60 run Prefect's own set-up (WAL, busy timeout 60 s); "
    "stack is the server as topup up starts it (topup_cli/sqlite_server.py: IMMEDIATE "
    "transactions). Throughput and latency depend on the machine's load at the time.",
]


class Counter:
    """Answers by kind, shared by the load threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.locked = 0
        self.other_errors = 0
        self.other_statuses: dict[str, int] = {}  # status (or "no answer") -> count
        self.latencies: list[float] = []

    def record(self, res: httpx.Response | None, seconds: float) -> None:
        with self.lock:
            self.requests += 1
            self.latencies.append(seconds)
            if res is not None and (res.status_code == 503 or "database is locked" in res.text):
                self.locked += 1
            elif res is None or res.status_code >= 400:
                self.other_errors += 1
                key = "no answer" if res is None else str(res.status_code)
                self.other_statuses[key] = self.other_statuses.get(key, 0) + 1


def _call(
    http: httpx.Client, counter: Counter, method: str, path: str, body: Any
) -> httpx.Response | None:
    began = time.monotonic()
    try:
        res: httpx.Response | None = http.request(method, path, json=body)
    except httpx.HTTPError:
        res = None
    counter.record(res, time.monotonic() - began)
    return res


def _state(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, "name": name}


def _worker(api: str, flow_id: str, cycles: int, counter: Counter) -> None:
    """One flow run: cycles of Running -> Paused -> Running, each with logs and a task run."""
    with httpx.Client(base_url=api, timeout=120) as http:
        body = {"flow_id": str(flow_id), "name": f"lock-{uuid.uuid4().hex[:8]}"}
        for _ in range(20):  # as Prefect's client: a 503 is retried (and counted)
            res = _call(http, counter, "POST", "/flow_runs/", body)
            if res is not None and res.status_code < 400:
                break
        else:
            return
        run_id = res.json()["id"]
        for i in range(cycles):
            for kind, name in (
                ("RUNNING", "Running"),
                ("PAUSED", "Paused"),
                ("RUNNING", "Running"),
            ):
                _call(
                    http,
                    counter,
                    "POST",
                    f"/flow_runs/{run_id}/set_state",
                    {"state": _state(kind, name), "force": True},
                )
            task = _call(
                http,
                counter,
                "POST",
                "/task_runs/",
                {
                    "flow_run_id": run_id,
                    "task_key": f"step-{i}",
                    "dynamic_key": str(i),
                    "name": f"step-{i}",
                },
            )
            if task is not None and task.status_code < 400:
                task_id = task.json()["id"]
                for kind, name in (("RUNNING", "Running"), ("COMPLETED", "Completed")):
                    _call(
                        http,
                        counter,
                        "POST",
                        f"/task_runs/{task_id}/set_state",
                        {"state": _state(kind, name), "force": True},
                    )
            logs = [
                {
                    "name": "topup.bench",
                    "level": 20,
                    "message": f"cycle {i} line {n}",
                    "timestamp": datetime.now(UTC).isoformat(),
                    "flow_run_id": run_id,
                }
                for n in range(20)
            ]
            _call(http, counter, "POST", "/logs/", logs)


def measure(config: str, threads: int, cycles: int, say: Callable[[str], None]) -> dict[str, Any]:
    """One server with ``config``'s environment under the load; what its answers were."""
    data = Path(tempfile.mkdtemp(prefix=f"topup-bench-lock-{config}-"))
    env, immediate = CONFIGS[config]
    stack = PrefectStack(
        StackSettings(
            data_dir=data, server_env=env, sqlite_immediate=immediate, isolate_topup_env=True
        )
    )
    try:
        stack.start_server()
        with httpx.Client(base_url=stack.api_url, timeout=60) as http:
            flow_id = http.post("/flows/", json={"name": "lock-bench"}).json()["id"]
        counter = Counter()
        began = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            for f in [
                pool.submit(_worker, stack.api_url, flow_id, cycles, counter)
                for _ in range(threads)
            ]:
                f.result()
        seconds = time.monotonic() - began
        server_log = (stack.log_dir / "server.log").read_text(errors="replace")
    finally:
        stack.stop()
        shutil.rmtree(data, ignore_errors=True)
    lat = sorted(counter.latencies)
    out = {
        "config": config,
        "requests": counter.requests,
        "locked": counter.locked,
        "other_errors": counter.other_errors,
        "other_statuses": counter.other_statuses,
        "locked_in_server_log": server_log.count("database is locked"),
        "seconds": round(seconds, 1),
        "requests_per_s": round(counter.requests / seconds, 1) if seconds else 0.0,
        # Useful work: answers that did what was asked (a 503 is quick, but did nothing).
        "ok_per_s": round((counter.requests - counter.locked - counter.other_errors) / seconds, 1)
        if seconds
        else 0.0,
        "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 1) if lat else 0.0,
    }
    say(
        f"  {config}: {out['locked']} locked / {out['requests']} requests, "
        f"{out['other_errors']} other errors {counter.other_statuses or ''}, {out['requests_per_s']} req/s, p95 {out['p95_ms']} ms"
    )
    return out


def run(repeat: int, say: Callable[[str], None], threads: int = 8, cycles: int = 40) -> BenchResult:
    result = BenchResult(
        name="sqlite_lock",
        title='SQLite "database is locked" on the embedded Prefect server',
        repeat=repeat,
        conditions={"threads": threads, "cycles": cycles},
    )
    result.notes += NOTES
    rows: list[dict[str, Any]] = []
    for _ in range(repeat):
        for config in CONFIGS:
            rows.append(measure(config, threads, cycles, say))
    result.tables["runs"] = rows
    for config in CONFIGS:
        mine = [r for r in rows if r["config"] == config]
        result.add(
            Figure(
                label=f"{config}: answers 'database is locked' (503)",
                unit="requests",
                samples=[float(r["locked"]) for r in mine],
                target="<= 0" if config == "stack" else None,
            )
        )
        result.add(
            Figure(
                label=f"{config}: successful requests",
                unit="req/s",
                samples=[float(r["ok_per_s"]) for r in mine],
                higher_is_better=True,
            )
        )
        result.add(
            Figure(
                label=f"{config}: p95 request latency",
                unit="ms",
                samples=[float(r["p95_ms"]) for r in mine],
            )
        )
    return result
