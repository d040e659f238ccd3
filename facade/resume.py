"""``/resume``: continue a paused task, answer its operator question, retry a failed one,
or rerun it from a named step.

Why its own module: it is the action with the most cases, and each case maps onto a
different Prefect call (resume, resume with run input, reschedule, or a new flow run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from facade import legacy, workflows
from facade.date_checks import guard_dates
from facade.errors import ApiError, bad_request
from facade.flow_runs import new_flow_run
from facade.models import Task
from facade.operator_input import operator_input
from facade.prefect_gateway import GatewayError, PrefectGateway
from facade.snapshots import snapshot
from flows.definitions import WorkflowDefinition


@dataclass
class ResumeOutcome:
    message: str
    flow_run_id: str
    new_flow_run: bool


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
        if form is None:  # Paused a moment ago; Prefect is still storing the question
            raise ApiError(409, "The run's question is not stored yet; try again in a moment")
        run_input = operator_input(form[0], decision, note, operator, inputs)
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
    """Replace the task's flow run by a new one; the old id moves to the history."""
    flow_run = await new_flow_run(gateway, task, parameters)
    old = task.flow_run_id
    task.flow_run_history = [*task.flow_run_history, *([old] if old else [])]
    task.flow_run_id = str(flow_run.id)
    task.parameters = parameters
    session.add(task)
    session.commit()
    session.refresh(task)
    return ResumeOutcome(message, str(flow_run.id), True)
