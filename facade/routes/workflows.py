"""Workflow catalog routes: list, detail, and parameter validation against a definition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query

from facade import workflows
from facade.deps import SessionDep, UserDep
from facade.errors import ApiError
from facade.models import utcnow
from facade.responses import iso
from facade.schemas import ValidateBody, error_example, example
from facade.task_create import workflow_ref
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


LEGACY_ITEM = {
    "id": 1,
    "name": "topup_standard_workflow",
    "version": "1.0.0",
    "description": "The standard procedure for one date ...",
    "config_path": "topup-standard-1.0.0.json",
    "status": "active",
    "created_at": "2026-03-07T08:00:00.000000",
    "updated_at": "2026-03-07T08:00:00.000000",
    "workflow": "topup-standard",
    "title": "Top-up injection validation, all 21 steps (1.1 - 8)",
    "legacy_names": ["topup_standard_workflow"],
    "flow": "topup-standard",
    "steps": 21,
}
ViewQuery = Annotated[
    str | None,
    Query(
        pattern="^(legacy|new)$",
        description="legacy (default): legacy names and shapes; new: definition names, "
        "every version",
    ),
]
ViewHeader = Annotated[str | None, Header(alias=workflows.VIEW_HEADER, pattern="^(legacy|new)$")]


def _new_view(view: str | None, header: str | None) -> bool:
    return (view or header) == workflows.NEW_VIEW


def _find(name: str, version: str | None) -> WorkflowDefinition:
    try:
        return workflows.resolve(name, version)
    except workflows.UnknownWorkflow as exc:
        raise ApiError(404, str(exc)) from None


@router.get(
    "",
    responses={200: example({"success": True, "workflows": [LEGACY_ITEM, WORKFLOW_ITEM]})},
)
async def list_workflows(
    session: SessionDep, user: UserDep, view: ViewQuery = None, x_view: ViewHeader = None
) -> dict[str, Any]:
    """The workflows: by legacy name, one per name (default), or every definition version
    under its own name (``?view=new`` or header ``X-Topup-Workflow-View: new``)."""
    loaded = iso(utcnow())
    if not _new_view(view, x_view):
        legacy_items = [
            {
                "id": workflow_ref(session, defn),
                "name": name,
                "version": defn.version,
                "description": defn.description,
                "config_path": workflows.config_name(defn),
                "status": "active",
                "created_at": loaded,
                "updated_at": loaded,
                "workflow": defn.name,
                "title": defn.title,
                "legacy_names": list(defn.legacy_names),
                "flow": defn.flow,
                "steps": len(defn.steps),
            }
            for name, defn in workflows.legacy_catalog()
        ]
        session.commit()
        return {"success": True, "workflows": legacy_items}
    items = []
    for defn in workflows.all_definitions():
        items.append(
            {
                "id": workflow_ref(session, defn),
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
    view: ViewQuery = None,
    x_view: ViewHeader = None,
) -> dict[str, Any]:
    """One workflow version: steps, parameters and how it runs.

    Without ``version``: the latest version of a name, or the version a legacy alias is
    declared on. The legacy view (default) names it as the legacy client knows it and gives
    ``execution_config`` the legacy keys; ``?view=new`` shows the definition's own name.
    """
    defn = _find(workflow_name, version)
    versions = [d.version for d in workflows.versions_of(defn)]
    new = _new_view(view, x_view)
    if new:
        name = defn.name
        execution: dict[str, Any] = {}
    else:
        name = workflow_name if workflow_name in defn.legacy_names else workflows.legacy_name(defn)
        execution = workflows.legacy_execution(defn)
    return {
        "success": True,
        "workflow": {
            "name": name,
            "workflow": defn.name,
            "title": defn.title,
            "description": defn.description,
            "version": defn.version,
            "versions": versions,
            "legacy_names": list(defn.legacy_names),
            "steps": [workflows.legacy_step(defn, i) for i in range(len(defn.steps))],
            "execution_config": {
                **execution,
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
