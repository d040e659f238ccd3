"""Create a task row: resolve the workflow, merge the user's defaults, validate, check dates.

Why its own module: nothing runs at create (no Prefect call); this is the facade's own
table, filled so that ``/start`` has a complete, validated task to run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from facade import workflows
from facade.date_checks import guard_dates
from facade.errors import ApiError, bad_request
from facade.models import Task, UserPreference, WorkflowRef
from flows.definitions import WorkflowDefinition


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
