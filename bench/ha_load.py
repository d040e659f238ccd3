"""Figure 6: the HA stack against the single-server stack, side by side — runs started per
minute and the facade's read throughput through the load balancer.

Each mode is the stack ``topup up`` starts (``topup_cli.supervisor.Supervisor``):

- ``single``: one Prefect server on SQLite, one worker, one facade process;
- ``ha``: two API servers + services on PostgreSQL/Redis behind HAProxy, two workers, two
  facade processes behind HAProxy (``--ha``).

Workload, identical in both: a fresh simulated site with 4 rounds × 25 dates (zero-latency
jobs), one ``topup-standard-steps`` task per date created and started through the facade
(rounds interleaved, 8 client threads), every worker limited to 4 flow runs at a time (the
machine has 2 cores). *Runs started per minute*: dates whose flow run reached Running, per
minute, from the first start request to the last run Running. Then wrk reads
``GET /api/tasks/{id}/progress`` over all those tasks through the facade URL (HAProxy in HA
mode) for ``seconds``. Bounded: every run ends, loopback only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import redis

from bench.facade_load import LUA, ensure_wrk, wrk
from bench.results import BenchResult, Figure, median
from bench.served import token
from bench.site_env import fresh_site, ssh_pair
from facade.config import FacadeSettings
from sim.layout import generated_layout

SCALES = {"full": (4, 25), "medium": (4, 5), "small": (2, 3)}
WORKER_LIMIT = 4
CLIENTS = 8
WORKFLOW = "topup-standard-steps"
PG = "postgres@127.0.0.1:5432"


def _start(c: httpx.Client, task_id: int) -> tuple[int, int]:
    """Start a task as a careful client does: a 503 (Prefect busy) or a timeout is retried
    (the facade starts runs idempotently); a 400 after a failed attempt means that attempt
    started it. Returns (final status, attempts that had to be repeated)."""
    repeated = 0
    for attempt in range(6):
        try:
            r = c.post(f"/api/tasks/{task_id}/start")
            status = r.status_code
        except httpx.TimeoutException:
            status = 504
        if status == 400 and attempt:
            return 200, repeated
        if status not in (503, 504):
            return status, repeated
        repeated += 1
        time.sleep(1.0)
    return status, repeated


def _submit(base: str, bearer: str, jobs: list[dict[str, Any]]) -> tuple[list[int], int]:
    """Create and start every task from CLIENTS threads; the task ids in job order and how
    many start requests had to be repeated."""
    ids: list[int | None] = [None] * len(jobs)
    todo = list(range(len(jobs)))
    lock = threading.Lock()
    errors: list[str] = []
    repeats = [0]

    def client() -> None:
        try:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=300
            ) as c:
                while True:
                    with lock:
                        if not todo:
                            return
                        i = todo.pop(0)
                    created = c.post("/api/tasks", json=jobs[i])
                    if created.status_code != 201:
                        errors.append(f"create {created.status_code}")
                        continue
                    task_id = created.json()["task_id"]
                    status, repeated = _start(c, task_id)
                    with lock:
                        repeats[0] += repeated
                    if status != 200:
                        errors.append(f"start {status}")
                    ids[i] = task_id
        except Exception as exc:  # reported below: a benchmark with holes is no benchmark
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[:5]}")
    return [i for i in ids if i is not None], repeats[0]


def _started_per_minute(sup: Any, base: str, bearer: str, ids: list[int], t0: datetime) -> float:
    """Runs per minute from ``t0`` (first start request) until the last flow run went Running
    (Prefect's start time of each run; the legacy view shows Scheduled as running too)."""
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=60
    ) as c:
        flow_runs = [UUID(c.get(f"/api/tasks/{i}").json()["task"]["flow_run_id"]) for i in ids]
    with sup.stack.sync_client() as client:
        starts = [client.read_flow_run(f).start_time for f in flow_runs]
    if any(t is None for t in starts):
        raise RuntimeError("a flow run never started")
    span = (max(starts) - t0).total_seconds()  # type: ignore[type-var]
    return len(ids) / (span / 60)


def _cpu_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (``/proc/stat``): every process of
    the stack, the flow runs, the sim's sshd and PostgreSQL included."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _wait_done(base: str, bearer: str, ids: list[int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=60
    ) as c:
        while True:
            states = [c.get(f"/api/tasks/{i}/progress").json().get("status") for i in ids]
            counts = {s: states.count(s) for s in set(states)}
            if all(s in ("success", "failed", "cancelled", "error") for s in states):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"runs did not finish: {counts}")
            time.sleep(5)


def measure(
    mode: str, pair: Any, scale: str, binary: str, seconds: int, say: Callable[[str], None]
) -> dict[str, float]:
    from topup_cli.ha import HaSettings, drop_database
    from topup_cli.settings import CliSettings
    from topup_cli.supervisor import Supervisor

    rounds, dates = SCALES[scale]
    layout = generated_layout(rounds=rounds, dates_per_round=dates, runs_per_date=2)
    tag = uuid.uuid4().hex[:8]
    ha = None
    if mode == "ha":
        ha = HaSettings(
            prefect_database_url=f"postgresql+asyncpg://{PG}/bench_{tag}_prefect",
            outputs_database_url=f"postgresql+psycopg://{PG}/bench_{tag}_outputs",
            redis_db=14,
        )
    with fresh_site(pair, layout) as site:
        if ha is not None:
            os.environ.pop("TOPUP_DATABASE_URL", None)  # the HA outputs store: PostgreSQL
        data = Path(tempfile.mkdtemp(prefix=f"topup-bench-{mode}-", dir="/tmp"))
        (data / "sites").mkdir()
        (data / "sites" / "default.json").write_text(site.settings.model_dump_json())
        cli = CliSettings(
            data_dir=data,
            prefect_port=0,
            facade_port=0,
            ui=False,
            rounds=[r.name for r in layout.rounds],
            workers=2 if ha else 1,
            worker_limit=WORKER_LIMIT,
            pause_poll_seconds=0.2,
        )
        sup = Supervisor(cli, ha=ha, say=lambda m: say(f"    ({mode}) {m}"))
        try:
            sup.start()
            assert sup.stack is not None
            bearer = token(
                FacadeSettings(
                    database_url=sup.stack.topup_database_url,
                    prefect_api_url=sup.stack.api_url,
                    downloads_dir=data / "downloads",
                ),
                "bench-user",
            )
            order = [(r.name, r.dates[i].date) for i in range(dates) for r in layout.rounds]
            jobs = [
                {
                    "workflow_name": WORKFLOW,
                    "task_name": f"ha-bench {r} {d}",
                    "parameters": {"date": d, "round": r, "poll_seconds": 0.2},
                }
                for r, d in order
            ]
            base = sup.facade_url
            say(f"    ({mode}) starting {len(jobs)} tasks through {base}")
            t0 = datetime.now(UTC)
            busy0, wall0 = _cpu_busy_seconds(), time.monotonic()
            ids, repeated = _submit(base, bearer, jobs)
            counts = _wait_done(base, bearer, ids, timeout=3600)
            busy, wall = _cpu_busy_seconds() - busy0, time.monotonic() - wall0
            per_minute = _started_per_minute(sup, base, bearer, ids, t0)
            say(f"    ({mode}) {per_minute:.1f} runs started/min; ends {counts}")
            script = data / "progress.lua"
            script.write_text(LUA % ", ".join(str(i) for i in ids))
            wrk(binary, f"{base}/api/tasks/{ids[0]}/progress", bearer, 2)  # warm-up
            load = wrk(binary, base, bearer, seconds, script)
            say(f"    ({mode}) facade reads: {load}")
            return {
                "runs_per_minute": per_minute,
                "succeeded": float(counts.get("success", 0)),
                "tasks": float(len(ids)),
                "start_repeats": float(repeated),
                "cpu_s_per_run": busy / len(ids),
                "cpu_busy_pct": 100 * busy / (wall * (os.cpu_count() or 1)),
                **{f"read_{k}": v for k, v in load.items()},
            }
        finally:
            sup.stop()
            if ha is not None:
                for url in (ha.prefect_database_url, ha.outputs_database_url):
                    drop_database(url.get_secret_value())
                for n in (ha.redis_db, ha.docket_db):
                    redis.Redis(db=n).flushdb()
            shutil.rmtree(data, ignore_errors=True)


def run(
    repeat: int, say: Callable[[str], None], scale: str = "full", seconds: int = 10
) -> BenchResult:
    binary = ensure_wrk(say)
    rounds, dates = SCALES[scale]
    result = BenchResult(name="ha", title="HA stack against one server", repeat=repeat)
    samples: dict[str, list[dict[str, float]]] = {"single": [], "ha": []}
    with ssh_pair() as pair:
        for i in range(repeat):
            for mode in ("single", "ha"):
                say(f"  {mode}, run {i + 1}/{repeat}")
                samples[mode].append(measure(mode, pair, scale, binary, seconds, say))
    single, ha = samples["single"], samples["ha"]

    for key, label, unit in (
        (
            "runs_per_minute",
            f"runs started per minute, {rounds} rounds × {dates} dates",
            "runs/min",
        ),
        ("read_rps", "facade GET /api/tasks/{id}/progress through the load balancer", "req/s"),
        ("read_p99_ms", "facade progress read p99 latency", "ms"),
    ):
        result.add(
            Figure(
                label=f"HA: {label}",
                unit=unit,
                samples=[s[key] for s in ha],
                baseline=median([s[key] for s in single]),
                higher_is_better=not key.endswith("_ms"),
                note="baseline: the single-server stack, same workload, same run",
            )
        )
    result.tables["side by side"] = [
        {
            "mode": mode,
            "runs started/min": median([s["runs_per_minute"] for s in runs]),
            "runs succeeded": median([s["succeeded"] for s in runs]),
            "progress reads/s": median([s["read_rps"] for s in runs]),
            "p99 ms": median([s["read_p99_ms"] for s in runs]),
            "read errors": median([s["read_non_2xx"] + s["read_socket_errors"] for s in runs]),
            "start requests repeated": median([s["start_repeats"] for s in runs]),
            "CPU s per run (machine)": median([s["cpu_s_per_run"] for s in runs]),
            "CPU busy %": median([s["cpu_busy_pct"] for s in runs]),
        }
        for mode, runs in (("single server (SQLite)", single), ("HA (2 API + PG + Redis)", ha))
    ]
    result.notes.append(
        "HA = `topup up --ha` (2 API servers + services on PostgreSQL/Redis, 2 workers, "
        "2 facades, HAProxy); baseline = the single-server stack (SQLite, 1 worker, 1 facade), "
        "same workload in the same run; one `topup-standard-steps` task per date (`--scale "
        "full`: 4 rounds × 25 dates = 100, the default; `medium`: 4 × 5; `small`: 2 × 3; the "
        "scale measured is under Conditions), zero-latency jobs, created and started through "
        f"the facade by {CLIENTS} clients, each worker limited to {WORKER_LIMIT} flow runs; "
        "then wrk reads `GET /api/tasks/{id}/progress` over those tasks through the facade URL "
        "(HAProxy in HA). *Runs started per minute*: from the first start request until the "
        "last run went Running. The dates of one round run in order (the round's slot) and a "
        "run holds a worker slot while it waits for its round. At `full` scale a run starts "
        "only when one ends, so the figure follows how fast the machine finishes runs, and "
        "the CPU columns say what each set-up costs; `medium` and `small` are dominated by "
        "start-up and are not a throughput figure. *CPU s per run*: busy CPU "
        "seconds of the whole machine (`/proc/stat`) from the first start request to the last "
        "run's end, over the runs. `python -m bench ha --splice`."
    )
    result.conditions.update(
        scale=scale,
        workers={"single": 1, "ha": 2},
        worker_limit=WORKER_LIMIT,
        clients=CLIENTS,
        wrk_seconds=seconds,
    )
    return result
