"""The workflow catalog as the facade sees it: definitions from ``flows.definitions``.

Why an adapter: legacy clients name workflows by their old names (``topup_standard_workflow``)
and send ``date_param``; the definitions know their legacy aliases, and this module adds the
few request-level translations and the legacy response shapes, so the routes stay thin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from flows import definitions, step_arguments
from flows.definitions import DefinitionError, WorkflowDefinition
from flows.definitions.models import ExecutionConfig

# Keys legacy clients send inside ``parameters`` that are not flow parameters: accepted,
# echoed back in the task's parameters, never passed to Prefect.
LEGACY_EXTRAS = ("user_id", "download_files")
# Flags for the facade itself, never flow parameters: ``rerun`` allows a date that was
# already processed, reset or submitted (store/date_guard.py).
FACADE_FLAGS = ("rerun",)
# Legacy parameter names that the definitions call differently.
LEGACY_PARAM_RENAMES = {"date_param": "date"}


class UnknownWorkflow(LookupError):
    pass


class ParameterError(ValueError):
    """Parameters rejected by the definition; ``status`` is 400 (missing) or 422 (invalid)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class PreparedParameters:
    """What a request's ``parameters`` become: flow parameters and echoed legacy extras."""

    flow: dict[str, Any]
    extras: dict[str, Any]


def resolve(name: str, version: str | None = None) -> WorkflowDefinition:
    """A definition by name or legacy alias; without a version the latest (for an alias:
    the latest version declaring it). The error names the version when only that is unknown.
    """
    try:
        return definitions.load(name, version)
    except DefinitionError as exc:
        # Names the version asked for (and the known ones) when the workflow exists.
        raise UnknownWorkflow(definitions.unknown_workflow_message(name, version)) from exc


def _known(name: str) -> bool:
    try:
        definitions.load(name)
    except DefinitionError:
        return False
    return True


def all_definitions() -> list[WorkflowDefinition]:
    return definitions.list_definitions()


def versions_of(defn: WorkflowDefinition) -> list[WorkflowDefinition]:
    return [d for d in all_definitions() if d.name == defn.name]


# ------------------------------------------------------------------- catalog views

NEW_VIEW = "new"
VIEW_HEADER = "X-Topup-Workflow-View"


def legacy_name(defn: WorkflowDefinition) -> str:
    """The name a legacy client knows the definition by (its first alias, else its name)."""
    return defn.legacy_names[0] if defn.legacy_names else defn.name


def config_name(defn: WorkflowDefinition) -> str | None:
    """The definition's file name: where it comes from, without any server directory."""
    return definitions.source_name(defn)


def legacy_catalog() -> list[tuple[str, WorkflowDefinition]]:
    """(catalog name, definition) as the legacy ``GET /api/workflows`` lists them.

    Driven by the definitions' data only: each legacy alias at the version declaring it, then
    the latest version of every name whose latest version has no alias (new workflows).
    """
    defs = all_definitions()
    out: list[tuple[str, WorkflowDefinition]] = []
    seen: set[str] = set()
    for d in defs:
        for alias in d.legacy_names:
            if alias not in seen:
                seen.add(alias)
                out.append((alias, definitions.load(alias)))
    latest: dict[str, WorkflowDefinition] = {}
    for d in defs:  # oldest first: the last one wins
        latest[d.name] = d
    out += [(name, d) for name, d in latest.items() if not d.legacy_names]
    return out


def legacy_execution(defn: WorkflowDefinition) -> dict[str, Any]:
    """The legacy ``execution_config``: declared, or derived from the steps' own settings."""
    if defn.execution is not None:
        return defn.execution.model_dump()
    steps = defn.steps
    return ExecutionConfig(
        default_timeout_minutes=max((s.timeout_minutes for s in steps), default=30),
        retry_on_failure=any(s.retries for s in steps),
        max_retries=max((s.retries for s in steps), default=0),
        retry_delay_seconds=max((s.retry_delay_seconds for s in steps), default=30),
    ).model_dump()


def deployment_names(defn: WorkflowDefinition) -> list[str]:
    """Candidate Prefect deployment names, the versioned convention first."""
    names = [
        f"{defn.flow}/{defn.name}-{defn.version}",
        f"{defn.flow}/{defn.flow}-{defn.version}",
        f"{defn.flow}/{defn.name}",
        f"{defn.flow}/{defn.flow}",
    ]
    return list(dict.fromkeys(names))


def split_parameters(raw: dict[str, Any]) -> PreparedParameters:
    """Separate legacy extras and rename legacy keys; nothing is validated here."""
    flow: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in raw.items():
        if key in LEGACY_EXTRAS or key in FACADE_FLAGS:
            extras[key] = value
            continue
        target = LEGACY_PARAM_RENAMES.get(key, key)
        if target in flow and target != key:
            raise ParameterError(422, f"Parameter {key} duplicates {target}", key)
        flow[target] = value
    return PreparedParameters(flow=flow, extras=extras)


def validate(defn: WorkflowDefinition, raw: dict[str, Any]) -> PreparedParameters:
    """Validate against the definition (types, required, defaults, bounds, date format)."""
    prepared = split_parameters(raw)
    try:
        checked = defn.validate_parameters(prepared.flow)
    except ValidationError as exc:
        raise _parameter_error(exc) from None
    except ValueError as exc:
        raise ParameterError(422, f"Invalid parameters: {exc}") from None
    return PreparedParameters(
        flow=_drop_unset(defn, checked, prepared.flow), extras=prepared.extras
    )


def rerun_flag(extras: dict[str, Any]) -> bool:
    """The ``rerun`` flag as legacy clients may send it (``true``, ``"True"``, ``1``)."""
    value = extras.get("rerun", False)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or value == 1


def _drop_unset(defn: WorkflowDefinition, checked: dict[str, Any], given: dict[str, Any]) -> dict:
    """Keep every given value and every non-None default (None means "flow decides")."""
    return {k: v for k, v in checked.items() if k in given or v is not None}


def _parameter_error(exc: ValidationError) -> ParameterError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or "parameters"
    kind = first.get("type", "")
    if kind == "missing":
        return ParameterError(400, f"Missing required parameter: {field}", field)
    if kind == "extra_forbidden":
        return ParameterError(422, f"Unknown parameter: {field}", field)
    msg = first.get("msg", "invalid")
    return ParameterError(422, f"Invalid parameter {field}: {msg}", field)


def legacy_step(defn: WorkflowDefinition, index: int) -> dict[str, Any]:
    """A step as ``GET /api/workflows/<name>`` shows it (legacy keys plus the new facts)."""
    step = defn.steps[index]
    out: dict[str, Any] = {
        "id": step.id,
        "order": index + 1,
        "display_name": step.title,
        "label": step.label,
        "module": "steps",
        "function": step.tasks[0] if step.tasks else step.id,
        "tasks": list(step.tasks),
        "description": step.title,
        "timeout_minutes": step.timeout_minutes,
        "retry_count": step.retries,
        "retry_delay_seconds": step.retry_delay_seconds,
        # the legacy mapping {function argument: task parameter}; fixed options beside it
        "parameters": step_arguments.step_parameters(defn, step),
        "options": dict(step.options),
        "required_files": list(step.required_files),
        "pause_after": step.pause_after,
    }
    if step.on_failure is not None:
        out["on_failure"] = step.on_failure.model_dump(exclude_none=True)
    if step.approval:
        out["approval"] = step.approval
    return out


def legacy_parameters_config(defn: WorkflowDefinition) -> dict[str, Any]:
    """The legacy ``parameters`` section: ``required`` names and ``optional`` specs.

    ``user_id`` comes first, as in every legacy workflow: legacy clients repeat it inside
    ``parameters`` (accepted and echoed; the bearer token is what identifies the caller).
    """
    required = ["user_id", *(n for n, s in defn.parameters.items() if s.required)]
    optional = []
    for name, spec in defn.parameters.items():
        if spec.required:
            continue
        item: dict[str, Any] = {"name": name, "type": spec.type, "default": spec.default}
        if spec.description:
            item["description"] = spec.description
        for key in ("minimum", "maximum", "pattern", "format", "enum"):
            value = getattr(spec, key)
            if value is not None:
                item[{"minimum": "min", "maximum": "max"}.get(key, key)] = value
        optional.append(item)
    return {"required": required, "optional": optional}
