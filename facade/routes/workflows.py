"""Workflow catalog routes: list, detail, and parameter validation against a definition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from facade import service, workflows
from facade.deps import SessionDep, UserDep
from facade.errors import ApiError
from facade.models import utcnow
from facade.responses import iso
from facade.schemas import ValidateBody, error_example, example
from flows.definitions import WorkflowDefinition

router = APIRouter(prefix="/api/workflows", tags=["workflows"])

WORKFLOW_ITEM = {
    "id": 1,
    "name": "topup-standard",
    "version": "1.0.0",
    "title": "Top-up injection validation, all 21 steps (1.1 - 8)",
    "description": "The standard procedure for one date ...",
    "legacy_names": ["topup_standard_workflow"],
    "flow": "topup-standard",
    "steps": 21,
    "status": "active",
    "created_at": "2026-03-07T08:00:00.000000",
    "updated_at": "2026-03-07T08:00:00.000000",
}
NOT_FOUND = {404: example(error_example("Workflow not found: nope"), "Unknown workflow")}


def _find(name: str, version: str | None) -> WorkflowDefinition:
    try:
        return workflows.resolve(name, version)
    except workflows.UnknownWorkflow as exc:
        raise ApiError(404, str(exc)) from None


@router.get("", responses={200: example({"success": True, "workflows": [WORKFLOW_ITEM]})})
async def list_workflows(session: SessionDep, user: UserDep) -> dict[str, Any]:
    """Every workflow version that can be run (no server paths are exposed)."""
    items = []
    loaded = iso(utcnow())
    for defn in workflows.all_definitions():
        items.append(
            {
                "id": service.workflow_ref(session, defn),
                "name": defn.name,
                "version": defn.version,
                "title": defn.title,
                "description": defn.description,
                "legacy_names": list(defn.legacy_names),
                "flow": defn.flow,
                "steps": len(defn.steps),
                "status": "active",
                "created_at": loaded,
                "updated_at": loaded,
            }
        )
    session.commit()
    return {"success": True, "workflows": items}


@router.get(
    "/{workflow_name}",
    responses={
        200: example(
            {
                "success": True,
                "workflow": {
                    "name": "topup-standard",
                    "version": "1.0.0",
                    "description": "...",
                    "steps": [{"id": "step1_1", "order": 1, "display_name": "First-pass jobs"}],
                    "execution_config": {"flow": "topup-standard", "deployment": "..."},
                    "parameters_config": {"required": ["date"], "optional": []},
                    "parameters_schema": {"type": "object"},
                    "versions": ["1.0.0", "1.1.0"],
                },
            }
        ),
        **NOT_FOUND,
    },
)
async def workflow_detail(
    workflow_name: str,
    user: UserDep,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """One workflow version (latest by default): steps, parameters and how it runs."""
    defn = _find(workflow_name, version)
    versions = [d.version for d in workflows.all_definitions() if d.name == defn.name]
    return {
        "success": True,
        "workflow": {
            "name": defn.name,
            "title": defn.title,
            "description": defn.description,
            "version": defn.version,
            "versions": versions,
            "legacy_names": list(defn.legacy_names),
            "steps": [workflows.legacy_step(defn, i) for i in range(len(defn.steps))],
            "execution_config": {
                "flow": defn.flow,
                "deployment": workflows.deployment_names(defn)[0],
                "tag": defn.tag,
                "requires_when": defn.requires_when,
            },
            "parameters_config": workflows.legacy_parameters_config(defn),
            "parameters_schema": defn.parameters_json_schema(),
        },
    }


@router.post(
    "/{workflow_name}/validate",
    responses={
        200: example(
            {
                "error": None,
                "success": True,
                "valid": True,
                "parameters": {"date": "250624", "round": "round18", "submit_job": True},
            }
        ),
        **NOT_FOUND,
    },
)
async def validate_parameters(
    workflow_name: str,
    user: UserDep,
    body: ValidateBody | None = None,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    """Check parameters without creating anything; returns them completed with defaults."""
    defn = _find(workflow_name, version)
    try:
        prepared = workflows.validate(defn, (body or ValidateBody()).parameters)
    except workflows.ParameterError as exc:
        return {
            "error": exc.message,
            "field": exc.field,
            "success": False,
            "valid": False,
        }
    return {"error": None, "success": True, "valid": True, "parameters": prepared.flow}
