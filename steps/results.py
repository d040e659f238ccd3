"""Typed results of the steps, shared by flows, artifacts and the facade."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

Action = Literal["continue", "retry", "manual", "exit", "ai"]
Severity = Literal["info", "warning", "error"]


class Outcome(StrEnum):
    SUCCESS = "success"
    WARNING = "warning"  # failed with a `continue` code: the flow goes on
    FAILED = "failed"


class ErrorInfo(BaseModel):
    """An entry of the legacy error dictionary, as operators know it."""

    code: int
    name: str
    action: Action
    severity: Severity
    message: str


class FileRecord(BaseModel):
    """A file a step produced or verified, with facts computed on the remote."""

    path: str
    size: int
    sha256: str
    content_type: str = "application/octet-stream"
    run: int | None = None
    role: Literal["output", "verified", "pdf", "download"] = "output"
    local_path: str | None = None


class StepResult(BaseModel):
    step: str  # "1.1", "8" ...
    outcome: Outcome = Outcome.SUCCESS
    message: str = ""
    date: str | None = None
    round: str | None = None
    runs_complete: list[int] = Field(default_factory=list)
    runs_incomplete: list[int] = Field(default_factory=list)
    files: list[FileRecord] = Field(default_factory=list)
    error: ErrorInfo | None = None
    # Step-specific facts (IST values, dates, run range, dry-run output ...).
    data: dict[str, Any] = Field(default_factory=dict)


class StepError(Exception):
    """A step failed with a dictionary error code; ``result`` says what was seen."""

    def __init__(self, result: StepResult) -> None:
        assert result.error is not None
        super().__init__(f"[{result.error.code} {result.error.name}] {result.message}")
        self.result = result

    @property
    def action(self) -> Action:
        assert self.result.error is not None
        return self.result.error.action

    def __reduce__(self):  # keep it picklable for Prefect result persistence
        return (self.__class__, (self.result,))
