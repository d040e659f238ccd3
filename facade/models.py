"""SQLModel tables owned by the facade.

Why so few columns: a task's status, progress, steps and logs live in Prefect; this database
only remembers what Prefect cannot know (the integer id legacy clients use, who owns the task,
which workflow version and parameters they asked for, and which flow runs belong to it).
Tables are prefixed ``facade_`` because the database is shared with the flows' outputs store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC (SQLModel requires it); responses render it as naive UTC like the legacy."""
    return datetime.now(UTC)


class User(SQLModel, table=True):
    __tablename__ = "facade_user"

    name: str = Field(primary_key=True, max_length=64)
    is_admin: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A bearer token; only its SHA-256 is stored, the token itself is shown once."""

    __tablename__ = "facade_api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    prefix: str = Field(max_length=16)  # first characters, to recognise a token in a list
    user_name: str = Field(foreign_key="facade_user.name", index=True)
    label: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class WorkflowRef(SQLModel, table=True):
    """Stable integer id of a (workflow, version): legacy tasks expose ``workflow_id``."""

    __tablename__ = "facade_workflow"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, max_length=128)
    version: str = Field(max_length=32)


class Task(SQLModel, table=True):
    """A legacy task: one workflow invocation by one user, mapped onto Prefect flow runs."""

    __tablename__ = "facade_task"
    # The task list filters by owner and pages newest first: one index walk, no sort.
    __table_args__ = (Index("ix_facade_task_user_newest", "user_name", "created_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_name: str = Field(index=True, max_length=64)
    task_name: str = Field(max_length=256)
    workflow_name: str = Field(max_length=128)
    workflow_version: str = Field(max_length=32)
    workflow_id: int = Field(foreign_key="facade_workflow.id")
    # Validated flow parameters (typed JSON), as passed to the flow run.
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    # Legacy extras the client sent (user_id, download_files): echoed, never sent to Prefect.
    extras: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    flow_run_id: str | None = Field(default=None, index=True, max_length=36)
    # Earlier flow runs of this task (a resume from a named step starts a new one).
    flow_run_history: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    # A task cancelled before it ever started has no flow run to carry the state.
    cancelled_before_start_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)

    def all_flow_run_ids(self) -> list[str]:
        """Oldest first, current last."""
        ids = list(self.flow_run_history)
        if self.flow_run_id:
            ids.append(self.flow_run_id)
        return ids


class AdoptedRun(SQLModel, table=True):
    """A flow run started outside the facade (CLI, UI, schedule, backfill) and the task row
    that shows it; the primary key makes two facade processes adopt a run only once."""

    __tablename__ = "facade_adopted_run"

    flow_run_id: str = Field(primary_key=True, max_length=36)
    task_id: int = Field(foreign_key="facade_task.id", index=True)
    adopted_at: datetime = Field(default_factory=utcnow)


class UserPreference(SQLModel, table=True):
    """Per-user preferences, the legacy schema's three groups."""

    __tablename__ = "facade_user_preference"

    user_name: str = Field(primary_key=True, foreign_key="facade_user.name")
    default_workflow: str | None = Field(default=None, max_length=128)
    parameter_defaults: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    notification_settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


FACADE_TABLES = [
    User.__table__,
    ApiToken.__table__,
    WorkflowRef.__table__,
    Task.__table__,
    UserPreference.__table__,
    AdoptedRun.__table__,
]
