"""One measured run of the default ``topup-standard`` flow (steps 1.1 to 7), in this process.

Why in-process: the remote-layer hook and the sleep watch live in the process that runs the
steps; a worker's flow-run process runs the very same flow function against the same Prefect
server API, so the per-step figures are the production ones (process start-up is measured
separately, by the start-latency benchmark).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.probe import Recorder, union_seconds, watching
from bench.site_env import BenchSite
from sim.sshd import SshPair

DATE = "250624"  # the real date: 19 runs
FLOW_PARAMETERS: dict[str, Any] = {
    "max_wait_minutes": 5.0,
    "poll_seconds": 0.05,  # the floor the steps accept
    "approve_reset": True,
    "approved_by": "bench",
}


@dataclass
class StepTiming:
    step: str
    wall: float
    remote: float
    waiting: float

    @property
    def rest(self) -> float:
        return max(self.wall - self.remote - self.waiting, 0.0)


@dataclass
class FlowMeasure:
    wall: float  # the call until Prefect recorded the run Completed
    remote: float  # union of command, session and download intervals
    waiting: float  # poll sleeps not overlapping remote actions
    commands: int
    sessions: int  # login-node sessions the client opened
    jump_logins: int  # logins the jump host's sshd logged
    login_logins: int  # logins the login node's sshd logged
    poll_commands: int
    steps: list[StepTiming] = field(default_factory=list)
    state: str = ""
    # After Completed, before the call returns: Prefect's flow engine joins its heartbeat
    # thread, which sleeps in 1 s slices (up to 1 s; the run is already final by then).
    teardown: float = 0.0

    @property
    def overhead(self) -> float:
        return max(self.wall - self.remote - self.waiting, 0.0)


def accepted(pair: SshPair, role: str) -> int:
    return pair.log_text(role).count("Accepted publickey")  # type: ignore[arg-type]


def _completed_at(flow_run_id: str) -> float:
    """When Prefect recorded the flow run final (its end time), as epoch seconds."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
    if run.end_time is None:
        raise RuntimeError(f"flow run {flow_run_id} has no end time")
    return run.end_time.timestamp()


def _task_windows(flow_run_id: str) -> list[tuple[str, float, float]]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)])),
            limit=200,
        )
    out = []
    for tr in runs:
        if tr.start_time is None or tr.end_time is None:
            continue
        out.append(
            (tr.task_key.rsplit("-", 1)[0], tr.start_time.timestamp(), tr.end_time.timestamp())
        )
    return sorted(out, key=lambda t: t[1])


def step_of(task_name: str) -> str:
    return "step8" if task_name.startswith("step8") else task_name


def run_flow(site: BenchSite, pair: SshPair, date: str = DATE) -> FlowMeasure:
    """Run the whole workflow for ``date`` on ``site`` and break its wall time down."""
    from flows.topup_standard import topup_standard

    recorder = Recorder()
    jump0, login0 = accepted(pair, "jump"), accepted(pair, "login")
    with watching(recorder):
        t0 = time.time()
        state = topup_standard(date=date, **FLOW_PARAMETERS, return_state=True)
        t1 = time.time()
    if not state.is_completed():
        raise RuntimeError(f"the benchmark flow did not complete: {state.type}: {state.message}")
    summary = state.result()
    done = min(_completed_at(summary["flow_run_id"]), t1)
    remote_iv = recorder.remote_intervals()
    remote = union_seconds(remote_iv, (t0, done))
    waiting = union_seconds([*remote_iv, *recorder.sleeps], (t0, done)) - remote
    commands = recorder.of("command")
    measure = FlowMeasure(
        wall=done - t0,
        teardown=t1 - done,
        remote=remote,
        waiting=waiting,
        commands=len(commands),
        sessions=len(recorder.of("session")),
        jump_logins=accepted(pair, "jump") - jump0,
        login_logins=accepted(pair, "login") - login0,
        poll_commands=sum(1 for e in commands if _poll_label(e.label)),
        state=str(summary.get("status")),
    )
    per_step: dict[str, StepTiming] = {}
    for name, start, end in _task_windows(summary["flow_run_id"]):
        step = step_of(name)
        r = union_seconds(remote_iv, (start, end))
        w = union_seconds([*remote_iv, *recorder.sleeps], (start, end)) - r
        t = per_step.setdefault(step, StepTiming(step, 0.0, 0.0, 0.0))
        t.wall += end - start
        t.remote += r
        t.waiting += w
    measure.steps = list(per_step.values())
    return measure


def _poll_label(label: str) -> bool:
    """A poll cycle: a ``poll_files`` script, a ``poll_tree`` find, or a legacy ``ls`` poll."""
    return label.startswith(("topup: poll of", "topup: legacy ls")) or (
        label.startswith("cd -- ") and "printf 'NODIR" in label
    )
