"""Figure 4: the facade under load — ``GET /api/tasks/{id}/progress`` and
``GET /api/tasks?user_id=`` with 10 000 tasks stored, driven by wrk on loopback.

Set-up: a real Prefect server (``topup_cli.stack``, no worker); ``HOT`` real flow runs, each
Running with its first steps' task runs (Completed, then one Running) created through the
Prefect API; 10 000 facade tasks inserted directly with SQLModel, spread over 100 users, each
pointing at one of those flow runs. The facade runs as its own uvicorn process; wrk's Lua
script rotates the progress requests over the bench user's tasks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bench.results import BenchResult, Figure, median
from bench.served import in_process, token
from facade.config import FacadeSettings

HOT = 60  # real flow runs
USERS = 100
BENCH_USER = "bench-user"
STEPS_DONE = 4
TARGET_RPS = 500
TARGET_P99_MS = 50
CONNECTIONS = 16


def ensure_wrk(say: Callable[[str], None]) -> str:
    path = shutil.which("wrk")
    if path:
        return path
    say("  installing wrk (apt-get install -y wrk)")
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not available")
    return path


def make_flow_runs(stack, count: int) -> list[str]:
    """``count`` Running flow runs of topup-standard with a few steps done, one running."""
    from prefect.states import Completed, Running

    from flows.registry import step_task
    from flows.topup_standard import topup_standard

    names = ["step1_1", "step1_2", "step1_3", "step1_4", "step2_1"]
    ids = []
    with stack.sync_client() as client:
        for i in range(count):
            fr = client.create_flow_run(
                topup_standard,
                parameters={"date": "250624", "round": "round18"},
                state=Running(),
                name=f"bench-load-{i}",
            )
            for k, name in enumerate(names[: STEPS_DONE + 1]):
                state = Running() if k == STEPS_DONE else Completed()
                client.create_task_run(
                    step_task(name), fr.id, dynamic_key="0", name=f"{name}-b{i}", state=state
                )
            ids.append(str(fr.id))
    return ids


def store_tasks(settings: FacadeSettings, total: int, flow_runs: list[str]) -> list[int]:
    """``total`` facade tasks; returns the ids of the bench user's tasks."""
    from facade.db import create_tables, make_engine
    from facade.models import Task
    from facade.task_create import workflow_ref
    from facade.tokens import ensure_user
    from facade.workflows import resolve

    engine = make_engine(settings.database_url)
    create_tables(engine)
    defn = resolve("topup-standard", None)
    mine: list[int] = []
    try:
        with Session(engine) as session:
            users = [BENCH_USER, *(f"user{u:03d}" for u in range(1, USERS))]
            for name in users:
                ensure_user(session, name)
            wid = workflow_ref(session, defn)
            session.commit()
            base = datetime.now(UTC) - timedelta(days=30)
            rows = []
            for i in range(total):
                owner = users[i % USERS]
                rows.append(
                    Task(
                        user_name=owner,
                        task_name=f"bench {i}",
                        workflow_name=defn.name,
                        workflow_version=defn.version,
                        workflow_id=wid,
                        parameters={"date": "250624", "round": "round18"},
                        flow_run_id=flow_runs[(i // USERS) % len(flow_runs)],
                        created_at=base + timedelta(seconds=i),
                    )
                )
            session.add_all(rows)
            session.flush()  # ids assigned; read them before commit expires every row
            mine = [r.id for r in rows if r.user_name == BENCH_USER]  # type: ignore[misc]
            session.commit()
    finally:
        engine.dispose()
    return mine


LUA = """
ids = {%s}
counter = 0
request = function()
  counter = counter + 1
  local id = ids[(counter %% #ids) + 1]
  return wrk.format("GET", "/api/tasks/" .. id .. "/progress")
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(int(g) for g in sock.groups())) if sock else 0.0,
    }


def check(base: str, bearer: str, task_id: int) -> None:
    """Both routes answer 200 with real content before any load is measured."""
    import httpx

    headers = {"Authorization": f"Bearer {bearer}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        progress = http.get(f"/api/tasks/{task_id}/progress")
        progress.raise_for_status()
        body = progress.json()
        if body.get("status") != "running" or body.get("completed_steps") != STEPS_DONE:
            raise RuntimeError(f"unexpected progress answer: {body}")
        listing = http.get("/api/tasks", params={"user_id": BENCH_USER})
        listing.raise_for_status()
        if not listing.json().get("tasks"):
            raise RuntimeError(f"unexpected list answer: {listing.text[:300]}")


def warm_up(base: str, bearer: str) -> None:
    """One listing of all the bench user's tasks: opens the DB and Prefect connections and,
    with the read cache on, reads every hot flow run once (two batched Prefect requests), so
    the timed runs measure the steady state instead of the first read of each run."""
    import httpx

    headers = {"Authorization": f"Bearer {bearer}"}
    with httpx.Client(base_url=base, headers=headers, timeout=300) as http:
        params: dict[str, str | int] = {"user_id": BENCH_USER, "limit": 1000}
        http.get("/api/tasks", params=params).raise_for_status()


def wrk(
    binary: str, url: str, bearer: str, seconds: int, script: Path | None = None
) -> dict[str, float]:
    argv = [binary, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    argv += ["-H", f"Authorization: Bearer {bearer}"]
    if script is not None:
        argv += ["-s", str(script)]
    res = subprocess.run([*argv, url], capture_output=True, text=True, check=True)
    parsed = parse_wrk(res.stdout)
    if parsed["rps"] == 0:
        raise RuntimeError(f"wrk completed no request:\n{res.stdout}\n{res.stderr}")
    return parsed


def run(
    repeat: int,
    say: Callable[[str], None],
    tasks: int = 10_000,
    seconds: int = 10,
    scale: str = "full",
) -> BenchResult:
    from topup_cli.stack import PrefectStack, StackSettings

    binary = ensure_wrk(say)
    result = BenchResult(name="facade", title="Facade under load", repeat=repeat)
    data_dir = Path(tempfile.mkdtemp(prefix="topup-bench-facade-", dir="/tmp"))
    stack_settings = StackSettings(data_dir=data_dir, isolate_topup_env=True, start_timeout=600)
    samples: dict[str, list[dict[str, float]]] = {
        f"{k} {m}": [] for k in ("progress", "list") for m in ("uncached", "cached")
    }
    try:
        stack = PrefectStack(stack_settings).start(deploy=False, worker=False)
        try:
            say(f"  creating {HOT} flow runs with task runs in Prefect")
            flow_runs = make_flow_runs(stack, HOT)
            fs = FacadeSettings(
                database_url=f"sqlite:///{data_dir / 'facade.db'}",
                prefect_api_url=stack.api_url,
                downloads_dir=data_dir / "downloads",
            )
            say(f"  storing {tasks} facade tasks")
            mine = store_tasks(fs, tasks, flow_runs)
            bearer = token(fs, BENCH_USER)
            script = data_dir / "progress.lua"
            script.write_text(LUA % ", ".join(str(i) for i in mine))
            for mode, ttl in (("uncached", "0"), ("cached", str(fs.prefect_read_ttl_seconds))):
                env = {"TOPUP_FACADE_PREFECT_READ_TTL_SECONDS": ttl}
                with in_process(fs, data_dir / f"facade-{mode}.log", env=env) as base:
                    check(base, bearer, mine[0])
                    warm_up(base, bearer)
                    wrk(binary, f"{base}/api/tasks/{mine[0]}/progress", bearer, 2)
                    for i in range(repeat):
                        p = wrk(binary, base, bearer, seconds, script)
                        ls = wrk(binary, f"{base}/api/tasks?user_id={BENCH_USER}", bearer, seconds)
                        samples[f"progress {mode}"].append(p)
                        samples[f"list {mode}"].append(ls)
                        say(f"  {mode} run {i + 1}/{repeat}: progress {p}; list {ls}")
        finally:
            stack.stop()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    for key, label in (
        ("progress", "GET /api/tasks/{id}/progress"),
        ("list", "GET /api/tasks?user_id="),
    ):
        _endpoint_figures(result, label, samples[f"{key} cached"], samples[f"{key} uncached"])
    result.conditions.update(
        tasks=tasks,
        users=USERS,
        flow_runs=HOT,
        wrk=f"2 threads, {CONNECTIONS} connections, {seconds}s per run",
        bench_user_tasks=len(mine),
        run_id=uuid.uuid4().hex[:8],
    )
    return result


def _endpoint_figures(
    result: BenchResult, label: str, runs: list[dict[str, float]], base: list[dict[str, float]]
) -> None:
    """One endpoint's wrk runs with Prefect's read cache, against the runs with it off."""

    def against_uncached(what: str, unit: str, *keys: str, **target_and_note: Any) -> None:
        """The sum of ``keys`` per run; the median of the uncached runs as the baseline."""
        result.add(
            Figure(
                label=f"{label} {what}",
                unit=unit,
                samples=[sum(r[k] for k in keys) for r in runs],
                baseline=median([sum(r[k] for k in keys) for r in base]),
                **target_and_note,
            )
        )

    against_uncached(
        "throughput",
        "req/s",
        "rps",
        target=f">= {TARGET_RPS}",
        note="baseline: Prefect read cache off (TTL 0); cache fed by Prefect's events",
        higher_is_better=True,
    )
    against_uncached("p99 latency", "ms", "p99_ms", target=f"<= {TARGET_P99_MS}")
    against_uncached("p50 latency", "ms", "p50_ms")
    against_uncached("errors (non-2xx + socket)", "responses", "non_2xx", "socket_errors")
