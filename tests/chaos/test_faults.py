"""Fault injection on real runs: a fault × point matrix on the session's Prefect stack.

Faults: the worker (and its flow-run process) SIGKILLed; the login node's sshd restarted; the
jump host's sshd restarted; the Prefect server restarted (same port, same database); the
facade restarted. Points, each recognised by observing the run (never by sleeping):

- ``job-wait``: step 1.1 waits for its batch jobs (they are in the queue);
- ``detached``: step 1.1's ``genJob.sh`` runs detached (control dir without ``rc``);
- ``between-steps``: step 1.2 has just completed (the record says whether 1.3 had begun).

Every scenario asserts the end state against a clean reference run of the same workflow on
a site of its own: the flow run Completed — by itself, after Prefect's retries, or after one
operator retry (a worker crash always needs one: nobody is left to report the run; the record
states how many, and the first end state and its reason when a run had to be retried); no
batch job submitted twice; the same output rows (step, run, path, role, sha256); nothing left
running on the site (no queued or running job, no process in the site tree). Most scenarios run the 4-step subset ``topup-standard-steps``; one
scenario per fault runs the full workflow (steps 1.1 - 7).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Scheduled

from facade.config import FacadeSettings
from sim import users
from sim.site import build_site, remove_site
from sim.sshd import SshPair
from tests.chaos.faults_helpers import (
    SIM_CHAOS,
    Outputs,
    compare_rows,
    duplicate_submissions,
    jobs_waiting,
    output_rows,
    poll,
    running_detached_dirs,
    summary,
    task_state,
    wait_no_orphans,
)
from tests.chaos.report import record
from tests.facade.served import serve
from tests.fixtures_stack import PREAPPROVED, StackRuns
from tests.stack.helpers import state_name
from topup_cli.processes import alive
from topup_cli.stack import PrefectStack

# The first scenario of a session may also start the Prefect stack and run a reference:
# pytest-timeout counts set-up time too (the suite default is 600 s).
pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(1200)]

DATE = "250626"  # round18, three runs
ROUND = "round18"
SUBSET = "topup-standard-steps-1.0.2"
FULL = "topup-standard-1.2.0"
# Jobs and generators slow enough for a fault to land inside them, no slower.
JOB_SECONDS = 3.0
GENJOB_SECONDS = 3.0


def run_parameters(deployment: str, site: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "date": DATE,
        "round": ROUND,
        "site": site,
        "max_wait_minutes": 3.0,
        "poll_seconds": 0.2,
    }
    if deployment == FULL:
        params.update(PREAPPROVED)
    return params


def write_site(stack: PrefectStack, settings: Any) -> str:
    name = f"chaos-{uuid.uuid4().hex[:10]}"
    data = settings.model_dump(mode="json", exclude={"jump_password", "login_password"})
    path = stack.sites_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    path.chmod(0o600)
    return name


def prefixes(root: Path, downloads: Path) -> dict[str, str]:
    return {str(downloads): "<downloads>", str(root): "<site>"}


# ------------------------------------------------------------------ reference runs

_REFERENCES: dict[str, Outputs] = {}


@pytest.fixture
def reference(
    stack: PrefectStack, sim_ssh: SshPair, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Outputs]:
    """The output rows of a clean run of a deployment (one run per deployment and session,
    on a simulated site of its own with the same fast faults)."""

    def get(deployment: str) -> Outputs:
        if deployment in _REFERENCES:
            return _REFERENCES[deployment]
        # Under /tmp itself: the login user must traverse every parent.
        root = Path(tempfile.mkdtemp(prefix="topup-chaos-ref-", dir="/tmp"))
        root.chmod(0o755)
        users.chown_tree(root, "topup")
        ref = build_site(root)
        users.chown_tree(root, "topup")
        ref.set_faults(**SIM_CHAOS)
        downloads = tmp_path_factory.mktemp("chaos-reference-downloads")
        name = write_site(
            stack,
            ref.settings(**sim_ssh.client_overrides(auth="key")).model_copy(
                update={"downloads_dir": downloads}
            ),
        )
        runs = StackRuns(stack)
        try:
            run = runs.start(deployment, **run_parameters(deployment, name))
            done = runs.wait(run.id, timeout=400)
            assert state_name(done) == "Completed", f"reference run: {done.state}"
            rows = output_rows(str(run.id), stack.topup_database_url, prefixes(root, downloads))
            assert rows.hashes, "the reference run recorded no output"
            assert duplicate_submissions(ref.submissions(), ref.root) == 0
        finally:
            runs.cancel_unfinished()
            ref.stop_jobs()
            (stack.sites_dir / f"{name}.json").unlink(missing_ok=True)
            remove_site(ref)
        _REFERENCES[deployment] = rows
        return rows

    return get


# ------------------------------------------------------------------ the scenarios


@dataclass
class Scenario:
    """One fault at one point of one run, and what was observed."""

    fault: str
    point: str
    deployment: str = SUBSET
    notes: list[str] = field(default_factory=list)
    operator_retries: int = 0

    @property
    def name(self) -> str:
        workflow = "full" if self.deployment == FULL else "steps-1.x"
        return f"{self.fault}@{self.point} ({workflow})"


def point_faults(point: str) -> dict[str, Any]:
    """Site faults that make the point last long enough to be hit."""
    if point == "job-wait":
        return {"job_seconds": JOB_SECONDS}
    if point == "detached":
        return {"slow": {"InjSigTimeCal/genJob.sh": GENJOB_SECONDS}}
    return {}


def reach_point(sc: Scenario, sim: Any, runs: StackRuns, run: FlowRun) -> None:
    """Poll the run and the site until the scenario's injection point is reached."""
    run_key = str(run.id)
    if sc.point == "job-wait":
        runs.wait_task(run.id, lambda ts: task_state(ts, "step1_1") == "Running", timeout=120)
        jobs = poll(
            lambda: (j := jobs_waiting(sim, "/InjSigTimeCal/")) and len(j) == 3 and j,
            60,
            "the three step-1.1 jobs in the batch queue",
        )
        sc.notes.append(f"jobs waiting: {[j['id'] for j in jobs]}")
    elif sc.point == "detached":
        dirs = poll(
            lambda: running_detached_dirs(sim.control_dir, run_key, ".1_1.genjob"),
            120,
            "step 1.1's genJob.sh running detached",
        )
        sc.notes.append(f"detached running: {dirs}")
    elif sc.point == "between-steps":
        tasks = runs.wait_task(
            run.id, lambda ts: task_state(ts, "step1_2") == "Completed", timeout=180
        )
        begun = task_state(tasks, "step1_3")
        sc.notes.append(f"step1_3 at injection: {begun or 'not created'}")
    else:
        raise ValueError(sc.point)


def finish(sc: Scenario, stack: PrefectStack, runs: StackRuns, run: FlowRun) -> FlowRun:
    """The run's final state; a Failed/Crashed run gets one operator retry (Prefect UI:
    Retry = back to Scheduled), whose outcome is final."""
    done = runs.wait(run.id, timeout=300)
    if state_name(done) != "Completed":
        message = done.state.message if done.state else ""
        sc.notes.append(f"first end: {state_name(done)}: {message[:300]}")
        sc.operator_retries += 1
        with stack.sync_client() as client:
            client.set_flow_run_state(run.id, Scheduled(), force=True)
        done = runs.wait(run.id, timeout=300)
    return done


def check_end_state(
    sc: Scenario,
    stack: PrefectStack,
    sim: Any,
    downloads: Path,
    done: FlowRun,
    expected_rows: Outputs,
) -> None:
    """Assert the end state of a scenario, then record it."""
    final = state_name(done)
    message = done.state.message if done.state else ""
    subs = sim.submissions()
    dups = duplicate_submissions(subs, sim.root)
    rows = output_rows(str(done.id), stack.topup_database_url, prefixes(sim.root, downloads))
    check = compare_rows(expected_rows, rows)
    left = wait_no_orphans(sim)

    assert final == "Completed", f"{sc.name}: {final}: {message}; notes {sc.notes}"
    assert dups == 0, f"{sc.name}: {dups} duplicate submissions: {subs}"
    assert check.ok, f"{sc.name}: outputs differ from the reference: {check}"
    assert not left, f"{sc.name}: left running on the site: {left}"
    record(
        group="faults",
        scenario=sc.name,
        injected=f"{sc.fault} during {sc.point}",
        outcome=(
            f"{final} after {sc.operator_retries} operator retr"
            f"{'y' if sc.operator_retries == 1 else 'ies'}; run_count {done.run_count}"
        ),
        submissions=len(subs),
        duplicate_submissions=dups,
        rows_lost=len(check.lost),
        orphans=len(left),
        details=summary(
            notes=sc.notes, rows=len(rows.hashes), site_specific_checked=check.checked_on_disk
        ),
    )


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Where the stack_site fixture's runs put downloaded PDFs."""
    return tmp_path / "downloads"


def scenario_run(
    sc: Scenario,
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    expected: Outputs,
    inject: Callable[[FlowRun], None],
) -> FlowRun:
    """Start the run, reach the point, inject, finish, assert and record."""
    sim.set_faults(**{**SIM_CHAOS, **point_faults(sc.point)})
    run = stack_runs.start(sc.deployment, **run_parameters(sc.deployment, stack_site))
    reach_point(sc, sim, stack_runs, run)
    inject(run)
    done = finish(sc, stack, stack_runs, run)
    check_end_state(sc, stack, sim, downloads, done, expected)
    return done


MATRIX_POINTS = ["job-wait", "detached", "between-steps"]


def deployment_for(point: str, full_at: str) -> str:
    """The full workflow (1.1 - 7) at one point of each fault, the 4-step subset elsewhere."""
    return FULL if point == full_at else SUBSET


# ------------------------------------------------------------------ worker SIGKILL


def kill_worker_and_reschedule(stack: PrefectStack, runs: StackRuns, run: FlowRun) -> None:
    """SIGKILL the worker and its flow-run process (a crashed machine); the operator then
    puts the run back to Scheduled and a new worker picks it up."""
    worker = stack.worker
    assert worker is not None
    tree = worker.tree()
    assert len(tree) >= 2, "the flow-run process should run below the worker"
    stack.kill_worker()
    assert not any(alive(k) for k in tree), "a process of the killed worker survived"
    # Nobody is left to report on the run: Prefect still shows it Running.
    assert state_name(runs.read(run.id)) == "Running"
    with stack.sync_client() as client:
        client.set_flow_run_state(run.id, Scheduled(), force=True)
    stack.start_worker()


@pytest.mark.parametrize("point", MATRIX_POINTS)
def test_worker_sigkill(
    point: str,
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    reference: Callable[[str], Outputs],
) -> None:
    sc = Scenario("worker SIGKILL", point, deployment_for(point, "job-wait"))
    expected = reference(sc.deployment)

    def inject(run: FlowRun) -> None:
        kill_worker_and_reschedule(stack, stack_runs, run)
        sc.operator_retries += 1  # the reschedule is the operator's one retry

    done = scenario_run(sc, stack, sim, stack_site, stack_runs, downloads, expected, inject)
    assert done.run_count >= 2


# ------------------------------------------------------------------ sshd restarts


@pytest.mark.parametrize("point", MATRIX_POINTS)
def test_login_sshd_restart(
    point: str,
    stack: PrefectStack,
    sim: Any,
    sim_ssh: SshPair,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    reference: Callable[[str], Outputs],
) -> None:
    sc = Scenario("login sshd restart", point, deployment_for(point, "detached"))
    expected = reference(sc.deployment)

    def inject(run: FlowRun) -> None:
        started = time.monotonic()
        sim_ssh.restart("login")
        sc.notes.append(f"login sshd down {time.monotonic() - started:.2f}s")

    scenario_run(sc, stack, sim, stack_site, stack_runs, downloads, expected, inject)


@pytest.mark.parametrize("point", ["job-wait", "detached"])
def test_jump_sshd_restart(
    point: str,
    stack: PrefectStack,
    sim: Any,
    sim_ssh: SshPair,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    reference: Callable[[str], Outputs],
) -> None:
    sc = Scenario("jump sshd restart", point, deployment_for(point, "job-wait"))
    expected = reference(sc.deployment)

    def inject(run: FlowRun) -> None:
        started = time.monotonic()
        sim_ssh.restart("jump")
        sc.notes.append(f"jump sshd down {time.monotonic() - started:.2f}s")

    scenario_run(sc, stack, sim, stack_site, stack_runs, downloads, expected, inject)


# ------------------------------------------------------------------ Prefect server restart


@pytest.mark.parametrize("point", ["job-wait", "between-steps"])
def test_prefect_server_restart(
    point: str,
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    reference: Callable[[str], Outputs],
) -> None:
    sc = Scenario("Prefect server restart", point, deployment_for(point, "job-wait"))
    expected = reference(sc.deployment)

    def inject(run: FlowRun) -> None:
        started = time.monotonic()
        stack.restart_server()
        sc.notes.append(f"API away {time.monotonic() - started:.2f}s")
        assert stack.worker is not None, "the worker died with the server"

    scenario_run(sc, stack, sim, stack_site, stack_runs, downloads, expected, inject)


# ------------------------------------------------------------------ facade restart


def legacy_status(c: httpx.Client, task_id: int) -> str:
    r = c.get(f"/api/tasks/{task_id}/progress")
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_facade_restart(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    downloads: Path,
    reference: Callable[[str], Outputs],
) -> None:
    """The facade keeps no state machine: a task created and started through one facade
    process is visible, controllable (pause, resume) and completes through the next one,
    with the same token, over the same database."""
    sc = Scenario("facade restart", "job-wait", FULL)
    expected = reference(sc.deployment)
    sim.set_faults(**{**SIM_CHAOS, **point_faults(sc.point)})
    downloads.mkdir(exist_ok=True)
    settings = FacadeSettings(
        database_url=stack.topup_database_url,
        prefect_api_url=stack.api_url,
        downloads_dir=downloads,
    )
    params = {**run_parameters(FULL, stack_site), "user_id": "alice"}
    with serve(settings) as first:
        token = first.token_for("alice")
        with first.client("alice") as c:
            created = c.post(
                "/api/tasks",
                json={
                    "user_id": "alice",
                    "workflow_name": "topup-standard",
                    "workflow_version": "1.2.0",
                    "task_name": "chaos facade restart",
                    "parameters": params,
                },
            )
            assert created.status_code == 201, created.text
            task_id = int(created.json()["task_id"])
            started = c.post(f"/api/tasks/{task_id}/start")
            assert started.status_code == 200, started.text
            run_id = UUID(started.json()["flow_run_id"])
            stack_runs.created.append(run_id)  # cancelled at teardown if left unfinished
            reach_point(sc, sim, stack_runs, stack_runs.read(run_id))
    # The first facade is gone (server stopped and joined); the run goes on in Prefect.
    assert state_name(stack_runs.read(run_id)) == "Running"

    with serve(settings) as second:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=second.base_url, headers=headers, timeout=30) as c:
            detail = c.get(f"/api/tasks/{task_id}")
            assert detail.status_code == 200, detail.text
            assert detail.json()["task"]["flow_run_id"] == str(run_id)
            assert legacy_status(c, task_id) == "running"
            # Controllable: pause lands at the next step boundary, resume goes on from there.
            paused = c.post(f"/api/tasks/{task_id}/pause")
            assert paused.status_code == 200, paused.text
            poll(lambda: legacy_status(c, task_id) == "paused", 120, "the task paused")
            resumed = c.post(f"/api/tasks/{task_id}/resume")
            assert resumed.status_code == 200, resumed.text
            sc.notes.append(f"paused and resumed: {resumed.json()['message']}")
            final = poll(
                lambda: (
                    (s := legacy_status(c, task_id)) in ("success", "failed", "cancelled") and s
                ),
                300,
                "the task to finish",
            )
            sc.notes.append(f"legacy status {final}")
    done = stack_runs.read(run_id)
    check_end_state(sc, stack, sim, downloads, done, expected)
