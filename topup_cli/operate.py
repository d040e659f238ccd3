"""What an operator does to a run that already exists: follow it (``topup attach``) and
send a failed one round again (``topup retry``).

Why here and not in the commands: ``topup run`` and ``topup attach`` must show the same bars
and ask the same prompts, and ``retry`` must do what the facade's retry does, so both rest
on these few functions, which only talk to the Prefect API.
"""

from __future__ import annotations

import getpass

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled
from rich.console import Console

from flows.definitions import WorkflowDefinition, load
from flows.naming import task_of
from topup_cli.api import CliError, Target
from topup_cli.progress import RunWatcher, prompt_answer
from topup_cli.reports import reports_folder

# A retry sends these back to the worker; any other state is refused with a reason.
RETRYABLE = (StateType.FAILED, StateType.CRASHED)
# What to do instead, for the states a retry refuses.
INSTEAD = {
    StateType.COMPLETED: "it completed; start a new run to process the date again",
    StateType.CANCELLED: "it was cancelled (an operator's abort is final); start a new run",
    StateType.PAUSED: "it waits for an operator: answer it with `topup attach`",
    StateType.RUNNING: "it is running: follow it with `topup attach`",
    StateType.SCHEDULED: "it is already scheduled: the worker picks it up",
    StateType.PENDING: "it is about to start: follow it with `topup attach`",
    StateType.CANCELLING: "it is being cancelled",
}


class Detached(Exception):
    """The operator left (Ctrl-C) while following: the run itself is left as it is."""

    def __init__(self, run: FlowRun) -> None:
        super().__init__(run.name)
        self.run = run


def definition_of(client: SyncPrefectClient, run: FlowRun) -> WorkflowDefinition:
    """The workflow definition the run executes: its ``workflow``/``workflow_version``
    parameters (topup-standard and its variants), else the definition named like its flow
    (submit-constants, available-dates, backfill)."""
    params = run.parameters or {}
    workflow, version = params.get("workflow"), params.get("workflow_version")
    if isinstance(workflow, str):
        try:
            return load(workflow, version if isinstance(version, str) else None)
        except (KeyError, LookupError, ValueError):
            pass
    try:
        flow_name = client.read_flow(run.flow_id).name
    except ObjectNotFound:
        raise CliError(f"flow run {run.name}: its flow is gone") from None
    try:
        return load(flow_name)
    except (KeyError, LookupError, ValueError):
        raise CliError(f"flow run {run.name} runs {flow_name!r}, which has no definition") from None


def follow(
    client: SyncPrefectClient,
    run: FlowRun,
    definition: WorkflowDefinition,
    target: Target,
    console: Console,
    prompt: bool,
    timeout: float,
) -> tuple[FlowRun, RunWatcher]:
    """Show the run's steps live until it is final, asking its pauses on a terminal."""
    interactive = prompt and console.is_terminal
    watcher = RunWatcher(
        client,
        run.id,
        definition,
        console,
        answer=prompt_answer(console) if interactive else None,
        ui_run_url=target.run_url(run.id),
        reports_folder=lambda: reports_folder(target.state, run.id, site),
    )
    site = (run.parameters or {}).get("site")
    try:
        final = watcher.watch(timeout)
    except KeyboardInterrupt:
        raise Detached(watcher.run or run) from None
    folder = reports_folder(target.state, run.id, site)
    if folder is not None:
        console.print(f"reports of this run: {folder}", soft_wrap=True)
    return final, watcher


def irreversible_reason(client: SyncPrefectClient, run: FlowRun) -> str | None:
    """Why this run may already have submitted to the database, by the crashed-run
    recovery's own rule (deployments/recovery.py: which flows, tags, state marker and step-8
    tasks count), or None. Such a run is retried only when the operator says so."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from deployments.recovery import IRREVERSIBLE_MARKER, IRREVERSIBLE_TASKS, RecoverySettings

    settings = RecoverySettings()
    flow_name = client.read_flow(run.flow_id).name
    if flow_name in settings.irreversible_flows:
        return f"it is a run of {flow_name}, the database submission"
    tagged = sorted(set(run.tags or []) & set(settings.irreversible_tags))
    if tagged:
        return f"it is tagged {', '.join(tagged)}"
    if any(
        IRREVERSIBLE_MARKER in (s.message or "").lower()
        for s in client.read_flow_run_states(run.id)
    ):
        return "it started an irreversible step"
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])), limit=200
    )
    # task_key (``step8_1_submit-<code hash>``), not the name: task runs are named for people
    started = sorted({task_of(t.task_key) for t in tasks} & set(IRREVERSIBLE_TASKS))
    if started:
        return f"it started {started[0]}"
    return None


def retry(
    client: SyncPrefectClient, run: FlowRun, who: str | None = None, confirmed: bool = False
) -> str:
    """Set a Failed or Crashed run back to Scheduled, as the facade's retry does: the worker
    starts the same flow run again, its completed steps come back Cached (persisted
    results) and the others re-attach to the remote work they started. Returns the state
    Prefect accepted; CliError names what to do instead for any other state."""
    state = run.state
    if state is None or state.type not in RETRYABLE:
        name = state.name if state is not None else "without a state"
        why = INSTEAD.get(state.type, "") if state is not None else ""
        raise CliError(
            f"flow run {run.name} is {name}: only a Failed or Crashed run can be retried"
            + (f" ({why})" if why else "")
        )
    why = irreversible_reason(client, run)
    if why is not None and not confirmed:
        raise CliError(
            f"flow run {run.name} may already have submitted to the database ({why}): check "
            f"what reached it first (`topup transcript {run.name}`, the submission ledger), "
            "then retry with --yes"
        )
    message = f"Retried from the CLI by {who or getpass.getuser()} (was {state.name})"
    result = client.set_flow_run_state(run.id, Scheduled(message=message), force=True)
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", None) or result.status.value
        raise CliError(f"Prefect refused the retry of {run.name}: {reason}")
    return result.state.name if result.state is not None else "Scheduled"
