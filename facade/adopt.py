"""Every flow run of the project's flows is a task: runs started outside the facade get a row.

Why: the CLI, the Prefect UI, schedules and backfills start flow runs without the facade;
without a task row they would be invisible to ``/api/tasks`` while Prefect shows them. Prefect
stays the truth: a row only remembers the integer id, the owner and the run; status, steps and
logs are read from Prefect as for any task.

Owner: the run's ``facade-user:<name>`` tag (the CLI sets it from ``--user`` / its token),
else ``ADOPTED_OWNER`` (only admins see those). Runs the facade started itself carry
``facade-task:<id>`` and are never adopted. ``facade_adopted_run``'s primary key makes two
facade processes adopt one run once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prefect.client.schemas.objects import FlowRun
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from facade import workflows
from facade.models import AdoptedRun, Task
from facade.prefect_gateway import GatewayError, PrefectGateway
from facade.task_create import workflow_ref
from facade.tokens import USER_NAME_RE
from flows.definitions import WorkflowDefinition

log = logging.getLogger("topup.facade.adopt")

USER_TAG = "facade-user:"
TASK_TAG = "facade-task:"
WORKFLOW_TAG = "workflow:"
ADOPTED_OWNER = "prefect"  # runs started without a user: visible to admins
# Runs whose expected start is older than the last look minus this are not looked at again.
OVERLAP = timedelta(minutes=10)


def project_flows() -> list[str]:
    """The flows the definitions run (``topup-standard``, ``available-dates``, ...)."""
    return sorted({d.flow for d in workflows.all_definitions()})


def owner_of(run: FlowRun) -> str:
    for tag in run.tags:
        if tag.startswith(USER_TAG):
            name = tag.removeprefix(USER_TAG)
            if USER_NAME_RE.fullmatch(name):
                return name
    return ADOPTED_OWNER


def definition_of(run: FlowRun, flow_name: str) -> WorkflowDefinition:
    """The definition the run executed: its ``workflow:`` tag, else its parameters, else
    the latest definition of its flow."""
    for tag in run.tags:
        if tag.startswith(WORKFLOW_TAG) and "@" in tag:
            name, _, version = tag.removeprefix(WORKFLOW_TAG).rpartition("@")
            try:
                return workflows.resolve(name, version)
            except workflows.UnknownWorkflow:
                break
    params = run.parameters or {}
    name = params.get("workflow") if isinstance(params.get("workflow"), str) else flow_name
    version = params.get("workflow_version")
    for candidate in ((name, version if isinstance(version, str) else None), (flow_name, None)):
        try:
            defn = workflows.resolve(*candidate)
        except workflows.UnknownWorkflow:
            continue
        # a backfill's ``workflow`` parameter names its per-date workflow, not its own
        if defn.flow == flow_name:
            return defn
    raise workflows.UnknownWorkflow(f"no definition for flow {flow_name}")


class Adopter:
    """Looks for new outside runs at most every ``min_interval`` seconds (one per process)."""

    def __init__(self, min_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self._lock = asyncio.Lock()
        self._last = 0.0
        self._since: datetime | None = None
        self._flow_names: dict[str, str] = {}  # flow id -> name

    async def sync(self, session: Session, gateway: PrefectGateway) -> int:
        """Adopt the outside runs started since the last look; how many were adopted.

        Prefect unreachable: nothing is adopted this time (the caller's own reads report it).
        """
        try:
            return await self._sync(session, gateway)
        except (GatewayError, OSError, httpx.HTTPError) as exc:
            log.warning("looking for runs started outside the facade failed: %r", exc)
            return 0

    async def _sync(self, session: Session, gateway: PrefectGateway) -> int:
        if time.monotonic() - self._last < self.min_interval:
            return 0
        async with self._lock:
            if time.monotonic() - self._last < self.min_interval:
                return 0
            looked_at = datetime.now(UTC)
            names = project_flows()
            runs = await gateway.runs_of_flows(names, self._since)
            adopted = await self._adopt(session, gateway, runs, names)
            self._since = looked_at - OVERLAP
            self._last = time.monotonic()
            return adopted

    async def _flow_name(self, gateway: PrefectGateway, flow_id: Any) -> str | None:
        key = str(flow_id)
        if key not in self._flow_names:
            flow = await gateway.client.read_flow(flow_id)
            self._flow_names[key] = flow.name
        return self._flow_names.get(key)

    async def _adopt(
        self, session: Session, gateway: PrefectGateway, runs: list[FlowRun], names: list[str]
    ) -> int:
        outside = [r for r in runs if not any(t.startswith(TASK_TAG) for t in r.tags)]
        if not outside:
            return 0
        ids = [str(r.id) for r in outside]
        known = set(
            session.exec(select(AdoptedRun.flow_run_id).where(AdoptedRun.flow_run_id.in_(ids)))  # type: ignore[attr-defined]
        )
        count = 0
        for run in reversed(outside):  # oldest first: ids grow with start order
            if str(run.id) in known:
                continue
            flow_name = await self._flow_name(gateway, run.flow_id)
            if flow_name not in names:
                continue
            try:
                defn = definition_of(run, flow_name)
            except workflows.UnknownWorkflow:
                log.warning("flow run %s: no workflow definition, not shown as a task", run.id)
                continue
            if self._add(session, run, defn):
                count += 1
        return count

    @staticmethod
    def _add(session: Session, run: FlowRun, defn: WorkflowDefinition) -> bool:
        owner = owner_of(run)
        params = {k: v for k, v in (run.parameters or {}).items() if k in defn.parameters}
        task = Task(
            user_name=owner,
            task_name=run.name,
            workflow_name=defn.name,
            workflow_version=defn.version,
            workflow_id=workflow_ref(session, defn),
            parameters=params,
            extras={"started_by": "prefect"},
            flow_run_id=str(run.id),
            created_at=run.created or datetime.now(UTC),
        )
        session.add(task)
        try:
            session.flush()
            assert task.id is not None
            session.add(AdoptedRun(flow_run_id=str(run.id), task_id=task.id))
            session.commit()
        except IntegrityError:  # another facade process adopted it first
            session.rollback()
            return False
        return True
