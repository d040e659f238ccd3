"""``/api/preferences``: the caller's default workflow, parameter defaults, notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import TypeAdapter, ValidationError

from facade import workflows
from facade.deps import SessionDep, UserDep
from facade.errors import ApiError
from facade.models import UserPreference, utcnow
from facade.responses import iso
from facade.schemas import PreferencesBody, error_example, example

router = APIRouter(prefix="/api/preferences", tags=["preferences"])
PREFS_EXAMPLE = {
    "success": True,
    "preferences": {
        "user_id": "user123",
        "default_workflow": "topup-standard",
        "parameter_defaults": {"topup-standard": {"round": "round18"}},
        "notification_settings": {"on_failure": True},
        "updated_at": "2026-03-07T08:39:46.952644",
    },
}


def _record(user: str, pref: UserPreference | None) -> dict[str, Any]:
    return {
        "user_id": user,
        "default_workflow": pref.default_workflow if pref else None,
        "parameter_defaults": pref.parameter_defaults if pref else {},
        "notification_settings": pref.notification_settings if pref else {},
        "updated_at": iso(pref.updated_at) if pref else None,
    }


def _check_defaults(defaults: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workflow must exist and each value must fit that parameter's type and bounds."""
    checked: dict[str, dict[str, Any]] = {}
    for name, values in defaults.items():
        try:
            defn = workflows.resolve(name)
        except workflows.UnknownWorkflow as exc:
            raise ApiError(422, str(exc), field=f"parameter_defaults.{name}") from None
        checked[defn.name] = {}
        for param, value in values.items():
            spec = defn.parameters.get(param)
            field = f"parameter_defaults.{name}.{param}"
            if spec is None:
                raise ApiError(422, f"Unknown parameter: {param}", field=field)
            try:
                TypeAdapter(spec.annotation()).validate_python(value)
            except ValidationError as exc:
                msg = exc.errors()[0].get("msg", "invalid")
                raise ApiError(422, f"Invalid parameter {param}: {msg}", field=field) from None
            checked[defn.name][param] = value
    return checked


@router.get("", responses={200: example(PREFS_EXAMPLE)})
async def get_preferences(session: SessionDep, user: UserDep) -> dict[str, Any]:
    return {
        "success": True,
        "preferences": _record(user.name, session.get(UserPreference, user.name)),
    }


@router.put(
    "",
    responses={
        200: example(PREFS_EXAMPLE),
        422: example(error_example("Workflow not found: nope"), "Invalid preferences"),
    },
)
async def put_preferences(
    body: PreferencesBody, session: SessionDep, user: UserDep
) -> dict[str, Any]:
    """Replace the groups given in the body; the others are kept."""
    pref = session.get(UserPreference, user.name) or UserPreference(user_name=user.name)
    if body.default_workflow is not None:
        try:
            pref.default_workflow = workflows.resolve(body.default_workflow).name
        except workflows.UnknownWorkflow as exc:
            raise ApiError(422, str(exc), field="default_workflow") from None
    if body.parameter_defaults is not None:
        pref.parameter_defaults = _check_defaults(body.parameter_defaults)
    if body.notification_settings is not None:
        pref.notification_settings = body.notification_settings
    pref.updated_at = utcnow()
    session.add(pref)
    session.commit()
    session.refresh(pref)
    return {"success": True, "preferences": _record(user.name, pref)}
