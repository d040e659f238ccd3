"""Tables of the outputs store, keyed by flow run (``flow_run_id`` = the run's ``run_key``).

- ``workflow_runs``: which definition (name@version) a flow run executed, for which date.
- ``step_runs``: the latest outcome of each task of a flow run (error code, runs, facts).
- ``step_outputs``: every file a step produced, verified or downloaded, with size and sha256.
- ``operator_decisions``: approvals and manual decisions, with who made them and why.
- ``date_records``: where each date of a round stands (running, failed, verified ...), which
  runs it put into the round's cumulative files, and what was missing when it was checked.
- ``run_exclusions``: runs a person excluded from the round's constants, and what was done.
- ``submissions``: the ledger of real database submissions, one row per part attempt.
- ``remote_commands``: the transcript, every remote command of a run with its answer.
- ``transcript_sites``: which site (and its remote base paths) a run's transcript was made on.
- ``run_physics``: per run of a date, the IST values, 50 Hz windows and ETS cuts the steps read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class WorkflowRun(SQLModel, table=True):
    __tablename__ = "workflow_runs"

    flow_run_id: str = Field(primary_key=True, max_length=64)
    flow_name: str = Field(max_length=64)
    workflow: str = Field(index=True, max_length=64)
    version: str = Field(max_length=32)
    date: str | None = Field(default=None, index=True, max_length=6)
    round: str | None = Field(default=None, index=True, max_length=16)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="running", max_length=16)  # running/completed/failed/aborted
    message: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class StepRun(SQLModel, table=True):
    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("flow_run_id", "task_name"),)

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(index=True, max_length=64)
    step_id: str = Field(max_length=16)  # definition step, e.g. "step8"
    task_name: str = Field(max_length=32)  # e.g. "step8_1_submit"
    label: str = Field(max_length=16)  # "1.1", "8.1" ...
    outcome: str = Field(max_length=16)  # success / warning / failed / skipped
    message: str = ""
    error_code: int | None = None
    error_name: str | None = None
    action: str | None = None
    date: str | None = Field(default=None, max_length=6)
    round: str | None = Field(default=None, max_length=16)
    runs_complete: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    runs_incomplete: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    missing_required: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    attempts: int = 1
    recorded_at: datetime = Field(default_factory=utcnow)


class StepOutput(SQLModel, table=True):
    __tablename__ = "step_outputs"
    __table_args__ = (UniqueConstraint("flow_run_id", "task_name", "path", "role"),)

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(index=True, max_length=64)
    step_id: str = Field(max_length=16)
    task_name: str = Field(max_length=32)
    label: str = Field(max_length=16)
    run: int | None = Field(default=None, index=True)
    path: str = Field(max_length=1024)  # remote path (the local one for downloads' twins)
    name: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    content_type: str = Field(max_length=64)
    role: str = Field(max_length=16)  # output / verified / pdf / download
    local_path: str | None = Field(default=None, max_length=1024)
    date: str | None = Field(default=None, index=True, max_length=6)
    round: str | None = Field(default=None, max_length=16)
    recorded_at: datetime = Field(default_factory=utcnow)


class OperatorDecisionRow(SQLModel, table=True):
    __tablename__ = "operator_decisions"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(index=True, max_length=64)
    step_id: str = Field(max_length=16)
    task_name: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=16)  # manual / approval / pre-approval / review
    decision: str = Field(max_length=16)  # continue / retry / abort / approve / skip
    decided_by: str = Field(default="", max_length=64)
    note: str = ""
    error_code: int | None = None
    decided_at: datetime = Field(default_factory=utcnow)


class DateRecord(SQLModel, table=True):
    """Where one date of a round stands; step 0, the gates and the submission read it.

    ``status``: running, failed (the run failed or was aborted: the round's cumulative files
    may hold its lines), unverified (ended with missing items nobody decided on), verified
    (every required output present and checked, or a person accepted what was missing).
    """

    __tablename__ = "date_records"

    round: str = Field(primary_key=True, max_length=16)
    date: str = Field(primary_key=True, max_length=6)
    status: str = Field(default="running", max_length=16)
    flow_run_id: str = Field(default="", max_length=64)
    workflow: str = Field(default="", max_length=80)  # name@version
    runs: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    # runs step 1.3 registered in interval.txt (the ones a submission would carry)
    registered_runs: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    missing: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    accepted: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    accepted_by: str = Field(default="", max_length=64)
    reset_done: bool = False
    message: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


class RunExclusion(SQLModel, table=True):
    """A run a person took out of the round's constants (IST anomaly, failed date ...)."""

    __tablename__ = "run_exclusions"
    __table_args__ = (UniqueConstraint("round", "run"),)

    id: int | None = Field(default=None, primary_key=True)
    round: str = Field(index=True, max_length=16)
    date: str | None = Field(default=None, max_length=6)
    run: int
    reason: str = Field(max_length=32)  # ist / failed-date / gate
    decided_by: str = Field(default="", max_length=64)
    note: str = ""
    flow_run_id: str = Field(default="", max_length=64)
    # what was done on the site (lines removed, files set aside), when anything was
    actions: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    decided_at: datetime = Field(default_factory=utcnow)


class Submission(SQLModel, table=True):
    """One attempt at one part's real database submission (``-sub_switch 1``).

    The row is written *before* the remote command starts (outcome ``unknown``) and updated
    when its exit status is known, so a worker that dies mid-submission leaves ``unknown``
    for a person to decide on. ``outcome``: submitted, failed, unknown.
    """

    __tablename__ = "submissions"

    id: int | None = Field(default=None, primary_key=True)
    round: str = Field(index=True, max_length=16)
    part: str = Field(max_length=8)  # 8.1 / 8.2 / 8.3
    run_from: int
    run_to: int
    runs: list[int] = Field(default_factory=list, sa_column=Column(JSON))
    dates: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    flow_run_id: str = Field(index=True, max_length=64)
    approved_by: str = Field(default="", max_length=64)
    dry_run_sha256: str = Field(default="", max_length=64)
    remote_key: str = Field(default="", max_length=255)  # the detached command's key
    resubmit_of: int | None = None  # the earlier submission a person chose to repeat
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    exit_status: int | None = None
    outcome: str = Field(default="unknown", max_length=16)
    output: str = ""  # the remote output's tail
    decided_by: str = Field(default="", max_length=64)  # who settled an unknown outcome
    note: str = ""


class RemoteCommand(SQLModel, table=True):
    """One remote command of a flow run (``steps.remote.transcript.CommandRecord``).

    ``text`` is masked; output is kept only as sizes, plus ``excerpt`` when it failed.
    The row id orders a run's commands.
    """

    __tablename__ = "remote_commands"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str = Field(index=True, max_length=64)
    step: str = Field(default="", max_length=64)  # task name, "" outside a task
    kind: str = Field(max_length=16)  # run / script / detached-start / ... / download
    what: str = Field(default="", max_length=200)
    text: str = Field(sa_column=Column(Text))
    cwd: str = Field(default="~", max_length=1024)
    exit_code: int | None = None
    error: str = ""
    duration: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    excerpt: str = ""
    answer: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    started_at: datetime = Field(default_factory=utcnow)


class TranscriptSite(SQLModel, table=True):
    """The site a run's commands went to, and its base paths (the replay maps them)."""

    __tablename__ = "transcript_sites"

    flow_run_id: str = Field(primary_key=True, max_length=64)
    site: str = Field(max_length=64)
    login: str = Field(default="", max_length=255)
    paths: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON))
    recorded_at: datetime = Field(default_factory=utcnow)


class RunPhysics(SQLModel, table=True):
    """The physics numbers of one run, as the steps read them from the site's files.

    Why a table: the date summary and the round's trend plots (flow artifacts and facade) read
    them without parsing reports again. ``ist`` from step 1.3 (``Interval_run{run}.txt``),
    ``windows`` (ms) from step 3.2 (this date's ``window.dat`` lines), ``ets_cuts`` (s) from
    step 5.2 (this date's ``ets_cut.txt`` lines); None = not read yet.
    """

    __tablename__ = "run_physics"

    round: str = Field(primary_key=True, max_length=16)
    date: str = Field(primary_key=True, max_length=6)
    run: int = Field(primary_key=True)
    flow_run_id: str = Field(default="", max_length=64)  # the run that recorded last
    ist: dict[str, int | None] | None = Field(default=None, sa_column=Column(JSON))
    registered: bool = False  # step 1.3 put the run into interval.txt
    windows: list[list[float]] | None = Field(default=None, sa_column=Column(JSON))
    ets_cuts: list[list[float]] | None = Field(default=None, sa_column=Column(JSON))
    updated_at: datetime = Field(default_factory=utcnow)


STORE_TABLES = [
    WorkflowRun.__table__,  # type: ignore[attr-defined]
    StepRun.__table__,  # type: ignore[attr-defined]
    StepOutput.__table__,  # type: ignore[attr-defined]
    OperatorDecisionRow.__table__,  # type: ignore[attr-defined]
    DateRecord.__table__,  # type: ignore[attr-defined]
    RunExclusion.__table__,  # type: ignore[attr-defined]
    Submission.__table__,  # type: ignore[attr-defined]
    RemoteCommand.__table__,  # type: ignore[attr-defined]
    TranscriptSite.__table__,  # type: ignore[attr-defined]
    RunPhysics.__table__,  # type: ignore[attr-defined]
]
