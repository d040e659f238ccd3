"""Failures and restarts: a job that never ends, a dropped SSH connection mid-poll,
``start_at_step``, and a retry of the same flow run that returns completed steps Cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client, tags
from prefect.flow_engine import run_flow
from prefect.states import Scheduled

from flows.topup_standard import topup_standard
from sim.sshd import SshPair
from steps import download_folders
from store import repository
from tests.flows.conftest import (
    FAST,
    ROUND,
    Driver,
    FlowEnv,
    poll,
    read_run,
    runs_tagged,
    settled_task_runs,
    task_runs,
    unique_tag,
)

DATE = "250626"
RUNS = [85420, 85421, 85422]
SUBSET = {"workflow": "topup-standard-steps", "workflow_version": "1.0.2"}


def _stage1(sim: Any) -> list[dict[str, Any]]:
    return [s for s in sim.submissions() if str(s["jobfile"]).endswith("_1.txt")]


def _task_states(flow_run_id: Any, *, ended: bool = True) -> list[tuple[str, str]]:
    """(step, state) of the run's task runs; of an ended run, once their states settled."""
    runs = settled_task_runs(flow_run_id) if ended else task_runs(flow_run_id)
    return [(t.task_key.rsplit("-", 1)[0], t.state_name or "") for t in runs]


def test_job_that_never_finishes_fails_after_the_wait_listing_the_run(
    flow_env: FlowEnv,
) -> None:
    sim = flow_env.sim
    sim.set_faults(never_finish={"1": [85421]})
    state = topup_standard(
        date=DATE, **SUBSET, max_wait_minutes=0.02, poll_seconds=0.1, return_state=True
    )
    assert state.is_failed()
    message = state.message or ""
    assert "step 1.1" in message and "1111" in message and "[85421]" in message
    run_id = str(state.state_details.flow_run_id)
    (step,) = repository.step_runs(run_id)
    assert step.task_name == "step1_1" and step.outcome == "failed"
    assert step.runs_incomplete == [85421] and step.runs_complete == [85420, 85422]
    # 1111 is a retry code: Prefect retried the task (definition: 2 retries), re-attaching
    # to the jobs each time instead of submitting them again
    (task,) = [t for t in settled_task_runs(run_id) if t.task_key.startswith("step1_1")]
    assert task.run_count == 3 and task.state_name == "Failed"
    assert len(_stage1(sim)) == len(RUNS)
    wf = repository.workflow_run(run_id)
    assert wf is not None and wf.status == "failed" and "85421" in wf.message


def test_connection_killed_mid_poll_completes_without_double_submission(
    flow_env: FlowEnv, sim_ssh: SshPair
) -> None:
    sim = flow_env.sim
    sim.set_faults(job_seconds=2.0)
    tag = unique_tag()
    dropped: list[int] = []

    def network_glitch() -> None:
        def polling() -> bool:
            runs = runs_tagged(tag)
            if not runs or len(_stage1(sim)) < len(RUNS):
                return False
            return ("step1_1", "Running") in _task_states(runs[0].id, ended=False)

        poll(polling, 60, "step 1.1 polling its jobs")
        dropped.append(sim_ssh.kill_sessions("login"))

    with Driver(network_glitch) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert dropped and dropped[0] >= 1  # a live session was really dropped
    assert state.is_completed(), state.message
    assert sorted(int(Path(s["jobfile"]).name[3:8]) for s in _stage1(sim)) == RUNS


def test_same_run_retry_returns_cached_steps_and_start_at_step_skips(
    flow_env: FlowEnv,
) -> None:
    sim = flow_env.sim
    sim.set_faults(container_exit=1)  # the PDF merge of 1.4 fails
    first = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    assert first.is_failed() and "step 1.4" in (first.message or "")
    run_id = first.state_details.flow_run_id
    assert _task_states(run_id)[-1] == ("step1_4", "Failed")

    # retry the same flow run (as a worker does after the operator fixed the cause)
    sim.set_faults(container_exit=None)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Scheduled(), force=True)
    again = run_flow(
        topup_standard,
        flow_run=read_run(run_id),
        parameters=read_run(run_id).parameters,
        return_type="state",
    )
    assert again.is_completed(), again.message  # type: ignore[union-attr]
    states = _task_states(run_id)
    for name in ("step1_1", "step1_2", "step1_3"):
        assert (name, "Cached") in states, states
    assert ("step1_4", "Completed") in states
    assert len(_stage1(sim)) == len(RUNS)  # nothing submitted again
    lines = Path(sim.inj("round18"), "interval.txt").read_text().splitlines()
    assert sum(line.startswith("85421 ") for line in lines) == 1  # 1.3 did not append twice
    assert (repository.workflow_run(str(run_id)) or object()).status == "completed"  # type: ignore[attr-defined]
    # the retried run keeps its name and has one round: and one date: tag, not two
    retried = read_run(run_id)
    assert retried.name == f"round18-{DATE}-topup-standard-steps-1.0.2"
    assert [t for t in retried.tags if t.startswith(("round:", "date:"))] == [
        "round:round18",
        f"date:{DATE}",
    ]

    # a new run starting at 1.4: the earlier steps are skipped, not run
    later = topup_standard(date=DATE, **SUBSET, **FAST, start_at_step="step1_4", return_state=True)
    assert later.is_completed(), later.message
    later_id = later.state_details.flow_run_id
    assert [n for n, _ in _task_states(later_id)] == ["step1_4"]
    outcomes = {s.task_name: s.outcome for s in repository.step_runs(str(later_id))}
    assert outcomes == {
        "step1_1": "skipped",
        "step1_2": "skipped",
        "step1_3": "skipped",
        "step1_4": "success",
    }
    assert len(_stage1(sim)) == len(RUNS)
    downloads = [o for o in repository.outputs(str(later_id)) if o.role == "download"]
    # the run's own folder <round>/<date>/<run name>[-<id8>] (a re-run of a date gets its own)
    folder = download_folders.folder(flow_env.downloads, str(later_id))
    assert folder.parent == flow_env.downloads / ROUND / DATE
    assert [Path(o.local_path or "").parent for o in downloads] == [folder]
    assert isinstance(UUID(str(later_id)), UUID)
