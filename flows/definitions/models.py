"""The pydantic models of a workflow definition file (see ``flows/definitions/*.json``).

A definition says *what* a flow run does (ordered steps with their timeout, retries, options,
pauses and approvals) and *which parameters* a caller may pass (type, default, bounds, pattern,
required). The flows read it at run time; the facade validates requests against it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    create_model,
    field_validator,
    model_validator,
)

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
VERSION_RE = r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$"
STEP_ID_RE = r"^step\d+(?:_\d+)?$"
TASK_NAME_RE = r"^step\d+(?:_[a-z0-9]+)*$"

ParamType = Literal["string", "integer", "number", "boolean"]
_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def version_key(version: str) -> tuple[int, int, int, str]:
    """Sort key for ``1.10.0`` > ``1.9.0``; a pre-release suffix sorts before the release."""
    m = re.match(r"^(\d+)\.(\d+)\.(\d+)(.*)$", version)
    if not m:
        return (0, 0, 0, version)
    major, minor, patch, rest = m.groups()
    # "" (a release) must sort after "-rc1": use "~" which is greater than any suffix char.
    return (int(major), int(minor), int(patch), rest or "~")


def _yymmdd(value: str | None) -> str | None:
    """A data-taking date ``yymmdd`` that is a real calendar day."""
    if value is None:
        return value
    if not re.fullmatch(r"\d{6}", value):
        raise ValueError("must be a date yymmdd (6 digits)")
    try:
        datetime.strptime(value, "%y%m%d")
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar date (yymmdd)") from None
    return value


def _yymmdd_list(value: str | None) -> str | None:
    """Comma-separated data-taking dates, each a real calendar day (``250624,250625``)."""
    if value is None:
        return value
    for date in value.split(","):
        _yymmdd(date)
    return value


def _date_number(value: Any) -> Any:
    """Legacy clients send ``"date": 250520`` as a number: the same date as ``"250520"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class ParameterSpec(BaseModel):
    """One parameter a caller may pass (a small, JSON-Schema-like subset)."""

    model_config = ConfigDict(extra="forbid")

    type: ParamType
    description: str = ""
    required: bool = False
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    format: Literal["yymmdd", "yymmdd-list"] | None = None
    enum: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        if self.pattern is not None:
            re.compile(self.pattern)
        if (self.minimum is not None or self.maximum is not None) and self.type not in (
            "integer",
            "number",
        ):
            raise ValueError("minimum/maximum only apply to integer and number parameters")
        if (self.pattern or self.format) and self.type != "string":
            raise ValueError("pattern/format only apply to string parameters")
        if self.required and self.default is not None:
            raise ValueError("a required parameter has no default")
        return self

    def annotation(self) -> Any:
        """The pydantic annotation enforcing this spec (lax: ``"25"`` is accepted as 25)."""
        base: Any = _PY_TYPES[self.type]
        if self.enum is not None:
            base = Literal[tuple(self.enum)]  # type: ignore[valid-type]
        constraints: dict[str, Any] = {}
        if self.minimum is not None:
            constraints["ge"] = self.minimum
        if self.maximum is not None:
            constraints["le"] = self.maximum
        if self.pattern is not None:
            constraints["pattern"] = self.pattern
        ann: Any = Annotated[base, Field(**constraints)] if constraints else base
        if self.format == "yymmdd":
            ann = Annotated[ann, BeforeValidator(_date_number), AfterValidator(_yymmdd)]
        elif self.format == "yymmdd-list":
            ann = Annotated[ann, AfterValidator(_yymmdd_list)]
        if not self.required and self.default is None:
            ann = ann | None
        return ann


class OnFailure(BaseModel):
    """What the legacy engine declared for a failed step; shown to legacy clients.

    ``stop`` is what every flow does with a failure its policy cannot continue from; the
    retries themselves are the step's ``retries`` (``max_retries`` mirrors them for display).
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["stop", "retry"] = "stop"
    notify: bool = False
    max_retries: int | None = Field(None, ge=0, le=10)


class ExecutionConfig(BaseModel):
    """The legacy ``execution`` section (``execution_config`` in the API), for legacy clients.

    Prefect enforces the steps' own timeouts and retries and the round slot; these values
    describe the workflow as the legacy catalog did.
    """

    model_config = ConfigDict(extra="forbid")

    max_parallel_tasks: int = Field(1, ge=1)
    default_timeout_minutes: float = Field(30, gt=0)
    retry_on_failure: bool = True
    max_retries: int = Field(2, ge=0, le=10)
    retry_delay_seconds: float = Field(30, ge=0)
    continue_on_error: bool = False
    cleanup_on_success: bool = False
    cleanup_on_failure: bool = False


class StepDefinition(BaseModel):
    """One step of the procedure and how the flow runs it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=STEP_ID_RE)  # legacy id, e.g. "step1_1"
    label: str  # as operators say it, e.g. "1.1"
    title: str
    # "task": one task named like the step; "database": step 8 (range, then per part a dry
    # run, the operator's approval and the real submission).
    kind: Literal["task", "database"] = "task"
    # Task names this step runs (progress and the facade map task runs back to the step).
    tasks: list[Annotated[str, Field(pattern=TASK_NAME_RE)]] = Field(default_factory=list)
    timeout_minutes: float = Field(gt=0, le=24 * 60)
    retries: int = Field(0, ge=0, le=10)
    retry_delay_seconds: float = Field(30.0, ge=0, le=3600)
    retry_backoff: float = Field(2.0, ge=1, le=10)
    # File name patterns (fnmatch; ``{run}`` and ``{date}`` substituted) the step must report.
    required_files: list[str] = Field(default_factory=list)
    # Reports (PDF names, ``{date}`` substituted) this step must download and hash-verify
    # before the date counts as verified (the gate before the reset checks them).
    reports: list[str] = Field(default_factory=list)
    pause_after: bool = False
    on_failure: OnFailure | None = None
    # The step waits for batch jobs: the flow's ``max_wait_minutes`` replaces its wait limit.
    batch_wait: bool = False
    approval: Literal["reset", "db_submit"] | None = None
    # Extra keyword arguments of the task (e.g. {"check": false} for step4_1).
    options: dict[str, Any] = Field(default_factory=dict)
    # When an operator answers "continue" to this step's manual error: rerun the task with
    # these options (e.g. 1.3 registers the runs without the IST check). None: go on.
    continue_with: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _defaults(self) -> StepDefinition:
        if not self.tasks:
            self.tasks = [self.id]
        if self.kind == "database" and self.approval != "db_submit":
            raise ValueError(f"{self.id}: a database step needs approval 'db_submit'")
        return self

    def retry_delays(self, scale: float = 1.0) -> list[float]:
        """Seconds before each Prefect retry: delay, delay*backoff, ..."""
        return [
            round(self.retry_delay_seconds * scale * self.retry_backoff**i, 3)
            for i in range(self.retries)
        ]


class WorkflowDefinition(BaseModel):
    """A named, versioned workflow: its parameters and its ordered steps."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_RE)
    version: str = Field(pattern=VERSION_RE)
    flow: Literal["topup-standard", "available-dates", "backfill", "submit-constants"]
    title: str
    description: str = ""
    # Names the legacy service used; an alias selects the version that declares it.
    legacy_names: list[str] = Field(default_factory=list)
    execution: ExecutionConfig | None = None
    parameters: dict[str, ParameterSpec]
    # {"approve_reset": ["approved_by"]}: when the key is truthy the listed ones must be set.
    requires_when: dict[str, list[str]] = Field(default_factory=dict)
    steps: list[StepDefinition] = Field(default_factory=list)

    _model: type[BaseModel] | None = PrivateAttr(default=None)

    @field_validator("parameters")
    @classmethod
    def _names(cls, v: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
                raise ValueError(f"invalid parameter name {name!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowDefinition:
        ids = [s.id for s in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate step ids in {self.name}@{self.version}")
        tasks = [t for s in self.steps for t in s.tasks]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"a task belongs to two steps in {self.name}@{self.version}")
        for key, deps in self.requires_when.items():
            for p in (key, *deps):
                if p not in self.parameters:
                    raise ValueError(f"requires_when names unknown parameter {p!r}")
        start = self.parameters.get("start_at_step")
        if start is not None:
            if start.enum is None:
                start.enum = list(ids)
            elif not set(start.enum) <= set(ids):
                raise ValueError("start_at_step enum names steps that do not exist")
        return self

    # ------------------------------------------------------------------ identity
    @property
    def tag(self) -> str:
        """The flow-run tag recording which definition a run executed."""
        return f"workflow:{self.name}@{self.version}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    # --------------------------------------------------------------------- steps
    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def step(self, step_id: str) -> StepDefinition:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"{self.name}@{self.version} has no step {step_id!r}")

    def steps_from(self, start_at_step: str | None) -> list[StepDefinition]:
        """The steps to run when starting at ``start_at_step`` (all when None)."""
        if start_at_step is None:
            return list(self.steps)
        index = self.step_ids.index(self.step(start_at_step).id)
        return self.steps[index:]

    def step_for_task(self, task_name: str) -> StepDefinition | None:
        """The step a task run belongs to (step 8 runs several tasks)."""
        for s in self.steps:
            if task_name in s.tasks:
                return s
        return None

    # ---------------------------------------------------------------- parameters
    def parameters_model(self) -> type[BaseModel]:
        """A pydantic model of the parameters (built once per definition)."""
        if self._model is None:
            fields: dict[str, Any] = {}
            for name, spec in self.parameters.items():
                default: Any = ... if spec.required else spec.default
                fields[name] = (
                    spec.annotation(),
                    Field(default, description=spec.description or None),
                )
            model_name = re.sub(r"\W", "_", f"Params_{self.name}_{self.version}")
            self._model = create_model(  # type: ignore[call-overload]
                model_name, __config__=ConfigDict(extra="forbid"), **fields
            )
        assert self._model is not None
        return self._model

    def validate_parameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """Checked and completed parameters (defaults applied).

        Raises ``pydantic.ValidationError`` naming the field (type, bounds, pattern, date,
        unknown or missing), or ``ValueError`` for a missing dependent parameter
        (``approved_by`` when a pre-approval is set).
        """
        model = self.parameters_model()
        checked = model.model_validate(dict(values)).model_dump()
        for key, deps in self.requires_when.items():
            if checked.get(key):
                for dep in deps:
                    value = checked.get(dep)
                    if value is None or (isinstance(value, str) and not value.strip()):
                        raise ValueError(f"parameter {dep!r} is required when {key!r} is set")
        return checked

    def parameters_json_schema(self) -> dict[str, Any]:
        """JSON Schema of the parameters (what the facade shows as ``parameters_config``)."""
        return self.parameters_model().model_json_schema()
