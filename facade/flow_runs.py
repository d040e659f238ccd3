"""Create a task's next flow run from its workflow version's deployment.

Why its own module: ``/start`` creates the first run and ``/resume`` a replacement one;
both name, tag and key the run the same way.
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import FlowRun

from facade import workflows
from facade.errors import ApiError
from facade.models import Task
from facade.prefect_gateway import GatewayError, PrefectGateway
from facade.snapshots import definition_of
from flows.definitions import WorkflowDefinition
from flows.naming import flow_run_name, run_tags


def _tags(task: Task, defn: WorkflowDefinition) -> list[str]:
    """Whose task, which definition, and the ``round:`` / ``date:`` tags (one each)."""
    params = task.parameters or {}
    return run_tags(
        [defn.tag, f"facade-task:{task.id}", f"facade-user:{task.user_name}"],
        round=params.get("round"),
        date=params.get("date"),
    )


async def new_flow_run(gateway: PrefectGateway, task: Task, parameters: dict[str, Any]) -> FlowRun:
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
