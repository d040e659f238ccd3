"""Figure 3: start latency — facade ``POST /api/tasks/{id}/start`` → first step running.

The production path: the facade (real HTTP) creates the flow run from the deployment; the
process worker of a real Prefect stack (``topup_cli.stack``) picks it up, starts a flow-run
process, which takes the round's slot and starts step 1.1. "Running" is the first task run's
start time as Prefect recorded it, so no polling granularity enters the figure. The run is
then cancelled and awaited (its round slot must be free before the next sample).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import httpx

from bench.results import BenchResult, Figure
from bench.served import in_thread, token
from bench.site_env import ssh_pair
from facade.config import FacadeSettings

TARGET_S = 2.0
DATES = ("250624", "250625", "250626")


def _first_task_start(stack, flow_run_id: str, deadline: float) -> tuple[float, float, float]:
    """(first task-run start, flow-run start, worker pickup) as epoch seconds."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    with stack.sync_client() as client:
        while time.monotonic() < deadline:
            runs = client.read_task_runs(flow_run_filter=flt, limit=50)
            started = [t.start_time for t in runs if t.start_time is not None]
            if started:
                fr = client.read_flow_run(UUID(flow_run_id))
                states = client.read_flow_run_states(UUID(flow_run_id))
                pending = [s.timestamp for s in states if s.type.value == "PENDING"]
                pickup = pending[0].timestamp() if pending else float("nan")
                assert fr.start_time is not None
                return min(started).timestamp(), fr.start_time.timestamp(), pickup
            time.sleep(0.05)
    raise TimeoutError(f"no step of flow run {flow_run_id} started in time")


def _cancel_and_wait(stack, flow_run_id: str, timeout: float = 180.0) -> None:
    from prefect.states import Cancelling

    with stack.sync_client() as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if run.state is not None and not run.state.is_final():
            client.set_flow_run_state(UUID(flow_run_id), Cancelling(), force=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = client.read_flow_run(UUID(flow_run_id))
            if run.state is not None and run.state.is_final():
                return
            time.sleep(0.25)
    raise TimeoutError(f"flow run {flow_run_id} did not end after cancellation")


def run(repeat: int, say: Callable[[str], None]) -> BenchResult:
    from topup_cli.stack import StackSettings

    result = BenchResult(name="latency", title="Start latency", repeat=repeat)
    total, post, pickup, process = [], [], [], []
    data_dir = Path(tempfile.mkdtemp(prefix="topup-bench-stack-", dir="/tmp"))
    settings = StackSettings(
        data_dir=data_dir,
        rounds=["round18"],
        worker_env={"TOPUP_RETRY_DELAY_SCALE": "0.01"},
        isolate_topup_env=True,
        start_timeout=600,
    )
    try:
        _measure(repeat, say, settings, total, post, pickup, process, result)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return _figures(result, settings, total, post, pickup, process)


def _measure(repeat, say, settings, total, post, pickup, process, result) -> None:  # type: ignore[no-untyped-def]
    from bench.site_env import fresh_site
    from topup_cli.stack import PrefectStack

    with ssh_pair() as pair, PrefectStack(settings) as stack:
        result.conditions["worker_query_seconds"] = settings.worker_query_seconds
        for i in range(repeat):
            with fresh_site(pair) as site:
                (stack.sites_dir / "default.json").write_text(site.settings.model_dump_json())
                fs = FacadeSettings(
                    database_url=stack.topup_database_url,
                    prefect_api_url=stack.api_url,
                    downloads_dir=site.work / "downloads",
                )
                bearer = token(fs, "bench")
                with (
                    in_thread(fs) as base,
                    httpx.Client(
                        base_url=base, headers={"Authorization": f"Bearer {bearer}"}, timeout=60
                    ) as http,
                ):
                    body = {
                        "workflow_name": "topup-standard",
                        "task_name": f"bench latency {i}",
                        "parameters": {
                            "date": DATES[i % len(DATES)],
                            "round": "round18",
                            "poll_seconds": 0.05,
                            "approve_reset": True,
                            "approved_by": "bench",
                        },
                    }
                    created = http.post("/api/tasks", json=body)
                    created.raise_for_status()
                    task_id = created.json()["task_id"]
                    t0 = time.time()
                    started = http.post(f"/api/tasks/{task_id}/start")
                    t1 = time.time()
                    started.raise_for_status()
                    flow_run_id = started.json()["flow_run_id"]
                    first, flow_start, picked = _first_task_start(
                        stack, flow_run_id, time.monotonic() + 900
                    )
                    _cancel_and_wait(stack, flow_run_id)
            total.append(first - t0)
            post.append(t1 - t0)
            pickup.append(picked - t0)
            process.append(flow_start - picked)
            say(
                f"  run {i + 1}/{repeat}: first step running after {first - t0:.2f}s "
                f"(POST {t1 - t0:.2f}s, worker pickup {picked - t0:.2f}s, "
                f"process start {flow_start - picked:.2f}s)"
            )


def _figures(result, settings, total, post, pickup, process) -> BenchResult:  # type: ignore[no-untyped-def]
    result.add(
        Figure(
            label="POST /start → first step running",
            unit="s",
            samples=total,
            target=f"<= {TARGET_S}",
        )
    )
    result.add(Figure(label="POST /start response time", unit="s", samples=post))
    result.add(
        Figure(
            label="POST → worker picked the run up (Pending)",
            unit="s",
            samples=pickup,
            note=f"worker polls every {settings.worker_query_seconds:g} s",
        )
    )
    result.add(
        Figure(
            label="Pending → flow-run process running",
            unit="s",
            samples=process,
            note="process start: Python, Prefect and the project imported",
        )
    )
    return result
