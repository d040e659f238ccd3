"""Task operations: create, read the Prefect-derived view, start, pause, resume, cancel.

Why a service layer: the same reads feed the REST routes, the WebSocket and Socket.IO, and
the control rules (what is allowed in which state, what each one does in Prefect) live in
one place instead of being spread over route functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any

from prefect.client.schemas.objects import FlowRun, Log, StateType, TaskRun
from sqlalchemy import update
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from facade import legacy, outputs, redact, workflows
from facade.errors import ApiError, bad_request
from facade.models import Task, UserPreference, WorkflowRef
from facade.prefect_gateway import GatewayError, PrefectGateway
from flows.definitions import WorkflowDefinition
from flows.naming import flow_run_name, run_tags
from store import date_guard


@dataclass
class Snapshot:
    """A task with everything read from Prefect for it at one moment."""

    task: Task
    defn: WorkflowDefinition
    flow_run: FlowRun | None
    task_runs: list[TaskRun]  # of all the task's flow runs
    view: legacy.TaskView

    def record(self) -> dict[str, Any]:
        return legacy.task_record(self.task, self.view)


def definition_of(task: Task) -> WorkflowDefinition:
    try:
        return workflows.resolve(task.workflow_name, task.workflow_version)
    except workflows.UnknownWorkflow:
        # The definition was removed after the task was created: the task still shows.
        raise ApiError(
            409, f"Workflow {task.workflow_name}@{task.workflow_version} is no longer defined"
        ) from None


async def snapshots(
    gateway: PrefectGateway, tasks: list[Task], *, history: bool = False
) -> list[Snapshot]:
    """Views of several tasks with two Prefect requests (runs, then their task runs)."""
    current = [t.flow_run_id for t in tasks if t.flow_run_id]
    runs = await gateway.read_runs(current)
    wanted = [i for t in tasks for i in (t.all_flow_run_ids() if history else [t.flow_run_id])]
    task_runs = await gateway.task_runs([i for i in wanted if i])
    by_flow: dict[str, list[TaskRun]] = {}
    for tr in task_runs:
        by_flow.setdefault(str(tr.flow_run_id), []).append(tr)
    out = []
    # Resolving scans the definition files' mtimes: once per workflow version per call.
    defns: dict[tuple[str, str], WorkflowDefinition] = {}
    for task in tasks:
        ref = (task.workflow_name, task.workflow_version)
        defn = defns.get(ref) or defns.setdefault(ref, definition_of(task))
        flow_run = runs.get(task.flow_run_id) if task.flow_run_id else None
        mine = [tr for fid in task.all_flow_run_ids() for tr in by_flow.get(fid, [])]
        view = legacy.task_view(task, defn, flow_run, mine)
        out.append(Snapshot(task, defn, flow_run, mine, view))
    return out


async def snapshot(gateway: PrefectGateway, task: Task, *, history: bool = True) -> Snapshot:
    return (await snapshots(gateway, [task], history=history))[0]


async def logs_by_task_run(gateway: PrefectGateway, task: Task, limit: int) -> dict[str, list[Log]]:
    # The newest ``limit`` lines (a long run's last steps matter most), in time order.
    logs = await gateway.logs(task.all_flow_run_ids(), limit=limit, newest_first=True)
    grouped: dict[str, list[Log]] = {}
    for log in reversed(logs):
        if log.task_run_id:
            grouped.setdefault(str(log.task_run_id), []).append(log)
    return grouped


CONSOLE_LOG_LIMIT = 5000


async def execution_records(
    gateway: PrefectGateway, task: Task, database_url: str, snap: Snapshot | None = None
) -> list[dict[str, Any]]:
    """Executions from Prefect's task runs and logs, with each step's recorded result."""
    snap = snap or await snapshot(gateway, task)
    logs = await logs_by_task_run(gateway, task, CONSOLE_LOG_LIMIT)
    records = legacy.executions(task, snap.defn, snap.task_runs, logs)
    results = await run_in_threadpool(outputs.step_results, database_url, task.all_flow_run_ids())
    for rec in records:
        row = results.get((rec["flow_run_id"], rec["task_run_name"]))
        duration = rec.get("duration_seconds")
        rec["step_result_json"] = outputs.step_result_json(
            row,
            task_id=task.id,
            step_order=rec["step_order"],
            elapsed=float(duration) if duration is not None else None,
        )
        if row is not None and rec["status"] in ("success", "failed"):
            rec["output_summary"] = redact.clean(row.message) or rec["output_summary"]
    return records


# ---------------------------------------------------------------------------- create


def workflow_ref(session: Session, defn: WorkflowDefinition) -> int:
    row = session.exec(
        select(WorkflowRef).where(
            WorkflowRef.name == defn.name, WorkflowRef.version == defn.version
        )
    ).first()
    if row is None:
        row = WorkflowRef(name=defn.name, version=defn.version)
        session.add(row)
        session.flush()
    assert row.id is not None
    return row.id


def preference_defaults(session: Session, user: str, defn: WorkflowDefinition) -> dict[str, Any]:
    """The user's stored parameter defaults for this workflow (by name or legacy name)."""
    pref = session.get(UserPreference, user)
    if pref is None:
        return {}
    defaults: dict[str, Any] = {}
    for key in (*defn.legacy_names, defn.name):
        value = pref.parameter_defaults.get(key)
        if isinstance(value, dict):
            defaults.update(value)
    return {k: v for k, v in defaults.items() if k in defn.parameters}


def create_task(
    session: Session,
    *,
    owner: str,
    workflow_name: str,
    workflow_version: str | None,
    task_name: str | None,
    parameters: dict[str, Any],
) -> Task:
    try:
        defn = workflows.resolve(workflow_name, workflow_version)
    except workflows.UnknownWorkflow as exc:
        raise bad_request(str(exc)) from None
    merged = {**preference_defaults(session, owner, defn), **parameters}
    try:
        prepared = workflows.validate(defn, merged)
    except workflows.ParameterError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    guard_dates(session, defn, prepared.flow, workflows.rerun_flag(prepared.extras))
    now = datetime.now(UTC)
    task = Task(
        user_name=owner,
        task_name=task_name or f"{workflow_name}_{now:%Y%m%d_%H%M%S}",
        workflow_name=defn.name,
        workflow_version=defn.version,
        workflow_id=workflow_ref(session, defn),
        parameters=prepared.flow,
        extras=prepared.extras,
    )
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


def guard_dates(
    session: Session, defn: WorkflowDefinition, flow: dict[str, Any], rerun: bool
) -> None:
    """Refuse the date(s) of a run before it exists: no raw data in the round (422), or
    already processed, reset or submitted without ``rerun`` (409); the field is named.

    Read from the outputs store only (``store/date_guard.py`` says why: no SSH in a request).
    A backfill's ``dates`` are checked for raw data only: the flow skips processed dates.
    """
    round_ = flow.get("round")
    if not isinstance(round_, str):
        return
    site = flow.get("site") if isinstance(flow.get("site"), str) else "default"
    checks: list[tuple[str, str, bool]] = []
    if "date" in defn.parameters and isinstance(flow.get("date"), str):
        checks.append(("date", flow["date"], rerun))
    if "dates" in defn.parameters and isinstance(flow.get("dates"), str):
        checks += [("dates", d, True) for d in flow["dates"].split(",") if d]
    if not checks:
        return
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    for name, date, allow_rerun in checks:
        try:
            date_guard.check_date(round_, date, str(site), rerun=allow_rerun, url=url)
        except date_guard.DateRefused as exc:
            status = 409 if exc.reason == "rerun_needed" else 422
            # named as parameter errors name their field (the key inside ``parameters``)
            field = "rerun" if exc.reason == "rerun_needed" else name
            raise ApiError(status, exc.message, field=field) from None


# --------------------------------------------------------------------------- control


def _tags(task: Task, defn: WorkflowDefinition) -> list[str]:
    """Whose task, which definition, and the ``round:`` / ``date:`` tags (one each)."""
    params = task.parameters or {}
    return run_tags(
        [defn.tag, f"facade-task:{task.id}", f"facade-user:{task.user_name}"],
        round=params.get("round"),
        date=params.get("date"),
    )


async def _new_flow_run(
    session: Session, gateway: PrefectGateway, task: Task, parameters: dict[str, Any]
) -> FlowRun:
    """Create the task's next flow run; the idempotency key makes a double request harmless."""
    defn = definition_of(task)
    try:
        deployment = await gateway.deployment(defn.flow, workflows.deployment_names(defn))
    except GatewayError:
        raise ApiError(503, f"Workflow {defn.name}@{defn.version} is not deployed") from None
    accepted = (deployment.parameter_openapi_schema or {}).get("properties", {})
    # The flow loads the definition it is told to: name and version travel with the run.
    identity = {"workflow": defn.name, "workflow_version": defn.version}
    parameters = {**parameters, **{k: v for k, v in identity.items() if k in accepted}}
    attempt = len(task.all_flow_run_ids())
    return await gateway.create_run(
        deployment.id,
        parameters,
        tags=_tags(task, defn),
        name=flow_run_name(defn.flow, parameters, defn.version),
        # Unique per task row (ids restart if the facade database is recreated).
        idempotency_key=f"facade-task-{task.id}-{task.created_at.timestamp():.6f}-run-{attempt}",
    )


async def start(session: Session, gateway: PrefectGateway, task: Task) -> FlowRun:
    snap = await snapshot(gateway, task, history=False)
    if snap.view.status != legacy.PENDING:
        raise bad_request(f"Cannot start task in {snap.view.status} state")
    # Again at start: a date may have been processed, or listed, since the task was created.
    await run_in_threadpool(
        guard_dates,
        session,
        snap.defn,
        task.parameters,
        workflows.rerun_flag(task.extras),
    )
    flow_run = await _new_flow_run(session, gateway, task, task.parameters)
    # Only the first starter records the run (a concurrent start got the same run anyway).
    session.exec(  # type: ignore[call-overload]
        update(Task)
        .where(Task.id == task.id, Task.flow_run_id.is_(None))  # type: ignore[union-attr]
        .values(flow_run_id=str(flow_run.id))
    )
    session.commit()
    session.refresh(task)
    return flow_run


def _not_inside_a_backfill(snap: Snapshot, action: str) -> None:
    """One date of a backfill runs inside the backfill's process (a subflow): Prefect can
    neither suspend it on its own ("Cannot suspend subflows") nor stop it without stopping
    that process, so the answer says what to do instead of accepting a no-op."""
    if snap.flow_run is not None and snap.flow_run.parent_task_run_id is not None:
        raise ApiError(
            409,
            f"Cannot {action} task: it is one date of a backfill and runs inside the "
            "backfill's flow run; pause or cancel the backfill's task instead",
        )


async def pause(gateway: PrefectGateway, task: Task) -> legacy.TaskView:
    snap = await snapshot(gateway, task, history=False)
    state = snap.flow_run.state.type if snap.flow_run and snap.flow_run.state else None
    if snap.view.status != legacy.RUNNING:
        raise bad_request(f"Cannot pause task in {snap.view.status} state")
    if state != StateType.RUNNING:
        raise ApiError(409, "The task's flow run has not started yet; pause it once it runs")
    _not_inside_a_backfill(snap, "pause")
    try:
        await gateway.suspend(str(task.flow_run_id))
    except GatewayError as exc:
        raise ApiError(409, f"Cannot pause task: {exc}") from None
    return (await snapshot(gateway, task, history=False)).view


def _step_or_400(defn: WorkflowDefinition, step: str) -> str:
    if step not in defn.step_ids:
        raise bad_request(f"Unknown step: {step} (steps: {', '.join(defn.step_ids)})")
    return step


def _revalidate(
    session: Session, task: Task, defn: WorkflowDefinition, updates: dict[str, Any]
) -> dict[str, Any]:
    prepared = workflows.split_parameters(updates)
    try:
        checked = workflows.validate(defn, {**task.parameters, **prepared.flow})
    except workflows.ParameterError as exc:
        raise ApiError(exc.status, exc.message, field=exc.field) from None
    moved = any(checked.flow.get(k) != task.parameters.get(k) for k in ("date", "round", "site"))
    if moved:  # a resume onto another date: checked as at create
        rerun = workflows.rerun_flag({**task.extras, **prepared.extras})
        guard_dates(session, defn, checked.flow, rerun)
    task.extras = {**task.extras, **prepared.extras}
    return checked.flow


@dataclass(frozen=True)
class WaitingFor:
    """What a paused run asks its operator: which field, which choices, and why."""

    field: str | None
    options: list[str]
    description: str | None
    # the form's other fields a caller may send in ``inputs`` (name and note are filled in)
    fields: list[str] = dataclass_field(default_factory=list)


CHOICE_FIELDS = ("decision", "action", "outcome")


def waiting_for(form: tuple[dict[str, Any], str | None] | None) -> WaitingFor | None:
    if form is None:
        return None
    schema, description = form
    props = schema.get("properties", {})
    field = next((f for f in CHOICE_FIELDS if f in props), None)
    options = list(props[field].get("enum", [])) if field else []
    others = [f for f in props if f not in (field, "name", "note", "description")]
    return WaitingFor(field, options, description, others)


def operator_input(
    schema: dict[str, Any],
    decision: str | None,
    note: str | None,
    operator: str,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run input for the paused flow's form, recorded under the caller's name.

    Without a decision a plain "continue" is assumed (the legacy resume), but an approval
    (reset, database submission) must be given explicitly. ``inputs`` fill the form's other
    fields (runs to exclude, the ledger row a decision is about); unknown ones are refused.
    """
    wait = waiting_for((schema, None))
    if wait is None or wait.field is None:
        raise ApiError(409, "The paused run waits for an input the facade does not know")
    choice = decision or ("continue" if "continue" in wait.options else None)
    if choice not in wait.options:
        raise bad_request(
            f"This task waits for a decision: send decision ({'/'.join(wait.options)})"
        )
    props = schema.get("properties", {})
    run_input: dict[str, Any] = {wait.field: choice}
    unknown = sorted(set(inputs or {}) - set(wait.fields))
    if unknown:
        raise bad_request(
            f"This form has no field {', '.join(unknown)}"
            + (f" (its fields: {', '.join(wait.fields)})" if wait.fields else "")
        )
    run_input.update(inputs or {})
    if "name" in props:
        run_input["name"] = operator
    if "note" in props and note:
        run_input["note"] = note
    return run_input


@dataclass
class ResumeOutcome:
    message: str
    flow_run_id: str
    new_flow_run: bool


async def resume(
    session: Session,
    gateway: PrefectGateway,
    task: Task,
    *,
    parameters: dict[str, Any],
    retry_from_step: str | None,
    decision: str | None,
    note: str | None,
    operator: str,
    inputs: dict[str, Any] | None = None,
) -> ResumeOutcome:
    """Continue a paused task, retry a failed one, or rerun from a named step."""
    snap = await snapshot(gateway, task, history=False)
    status, defn = snap.view.status, snap.defn
    if status in (legacy.PENDING, legacy.RUNNING):
        raise bad_request(f"Cannot resume task in {status} state")
    if status == legacy.PAUSING:
        raise ApiError(409, "Task is pausing: resume it once the running step has ended")
    if retry_from_step is not None:
        step = _step_or_400(defn, retry_from_step)
        new_params = _revalidate(session, task, defn, {**parameters, "start_at_step": step})
        if status == legacy.PAUSED:
            # The paused run is replaced; cancelling it also cleans its remote leftovers.
            await gateway.cancel(str(task.flow_run_id))
        return await _rerun(session, gateway, task, new_params, f"Task resumed from step: {step}")

    flow_run_id = str(task.flow_run_id)
    if status == legacy.PAUSED and snap.view.waiting_for_input:
        paused_at = snap.view.pause_at_step
        if parameters and paused_at and defn.step(paused_at).pause_after:
            # The legacy resume of a review pause: the paused step runs again with the new
            # parameters (in a new flow run starting there; the paused one is cancelled).
            new_params = _revalidate(
                session, task, defn, {**parameters, "start_at_step": paused_at}
            )
            await gateway.cancel(flow_run_id)
            return await _rerun(
                session, gateway, task, new_params, f"Task resumed from step: {paused_at}"
            )
        if parameters:
            raise bad_request("This task waits for an operator decision; parameters can't change")
        assert snap.flow_run is not None
        form = await gateway.pause_form(snap.flow_run)
        run_input = operator_input(form[0] if form else {}, decision, note, operator, inputs)
        try:
            await gateway.resume(flow_run_id, run_input=run_input)
        except GatewayError as exc:
            raise ApiError(409, f"Cannot resume task: {exc}") from None
        choice = next(iter(run_input.values()))
        return ResumeOutcome(f"Task resumed with decision: {choice}", flow_run_id, False)

    if status == legacy.SUCCESS:
        raise bad_request("Cannot resume task in success state (give retry_from_step to rerun)")
    if parameters:
        new_params = _revalidate(session, task, defn, parameters)
        await gateway.update_parameters(flow_run_id, new_params)
        task.parameters = new_params
        session.add(task)
        session.commit()
    try:
        if status == legacy.PAUSED:
            await gateway.resume(flow_run_id)
        else:  # failed or cancelled: run the same flow run again, completed steps are cached
            await gateway.reschedule(flow_run_id)
    except GatewayError as exc:
        raise ApiError(409, f"Cannot resume task: {exc}") from None
    where = snap.view.current_step or "the start"
    return ResumeOutcome(f"Task resumed from step: {where}", flow_run_id, False)


async def _rerun(
    session: Session,
    gateway: PrefectGateway,
    task: Task,
    parameters: dict[str, Any],
    message: str,
) -> ResumeOutcome:
    flow_run = await _new_flow_run(session, gateway, task, parameters)
    old = task.flow_run_id
    task.flow_run_history = [*task.flow_run_history, *([old] if old else [])]
    task.flow_run_id = str(flow_run.id)
    task.parameters = parameters
    session.add(task)
    session.commit()
    session.refresh(task)
    return ResumeOutcome(message, str(flow_run.id), True)


async def cancel(session: Session, gateway: PrefectGateway, task: Task) -> str:
    snap = await snapshot(gateway, task, history=False)
    status = snap.view.status
    if status in legacy.FINAL:
        raise bad_request(f"Cannot cancel task in {status} state")
    if task.flow_run_id is None:
        task.cancelled_before_start_at = datetime.now(UTC)
        session.add(task)
        session.commit()
        return legacy.CANCELLED
    _not_inside_a_backfill(snap, "cancel")
    try:
        await gateway.cancel(task.flow_run_id)
    except GatewayError as exc:
        raise ApiError(409, f"Cannot cancel task: {exc}") from None
    return legacy.CANCELLED
