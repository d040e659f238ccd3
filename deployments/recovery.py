"""Crashed runs recover by themselves: detect dead runs, reschedule them, bounded, notified.

Why: a worker machine that dies (or a flow-run process killed) leaves its run Running with
nobody to report on it, and until now a person had to notice and press Retry. A retried run
is safe: every step re-attaches to the remote work it started (``run_key``) and completed
steps are read back from persisted results. So two pieces, both talking only to the Prefect
API (they run anywhere, any number of times):

1. **Detection** (Prefect's documented "zombie flow run" pattern): flow-run processes send a
   heartbeat event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds; the automation
   ``topup-recovery-crashed`` (proactive: after a heartbeat, expect another heartbeat or an
   end state within ``zombie_seconds``) sets a silent run Crashed. It runs in the server's
   triggers service.
2. **Rescheduling** (``Recoverer``, a small loop, ``python -m deployments.recovery``): every
   ``poll_seconds`` it reads Crashed flow runs and, when ``decide`` allows, sets them back to
   Scheduled, counting attempts in the run's label ``topup.recovery.attempts``, and posts a
   notification (the webhook block of ``deployments.notifications``) for every decision.

The rule (``decide``), in this order:

- only Crashed runs of the configured flows (``topup-standard``, ``backfill``);
- NEVER a run of an irreversible flow (``submit-constants``: the database submission of
  step 8), nor a run tagged ``irreversible``, nor a run any of whose states carried the
  marker ``IRREVERSIBLE_MARKER`` in its message, nor a run with a ``step8_*_submit`` task run
  (a real database submission was started): a person decides those;
- never a run that was Suspended (an operator's pause from the facade or the UI) when it
  was set Crashed: its process ends on purpose;
- at most ``max_attempts`` reschedules per run; then it stays Crashed and the notification
  says so.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateName,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, State
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deployments.notifications import NotificationSettings

log = logging.getLogger("topup.deployments.recovery")

# A flow writes this in a state message before it starts an irreversible step (the database
# submission); a run that ever carried it is never recovered automatically.
IRREVERSIBLE_MARKER = "irreversible step started"
# The real submissions (flows.policy.irreversible): any of them started means a person decides.
IRREVERSIBLE_TASKS = ("step8_1_submit", "step8_2_submit", "step8_3_submit")
ATTEMPTS_LABEL = "topup.recovery.attempts"
RESCHEDULED_MESSAGE = "Rescheduled by topup recovery after a crash (attempt {n} of {max})"


class RecoverySettings(BaseSettings):
    """How crashed runs are recovered (environment prefix ``TOPUP_RECOVERY_``)."""

    model_config = SettingsConfigDict(env_prefix="TOPUP_RECOVERY_", extra="ignore")

    enabled: bool = True
    max_attempts: int = Field(3, ge=1, le=20)
    poll_seconds: float = Field(5.0, gt=0, le=300)
    # Missing heartbeats for this long make a Running run Crashed (the heartbeat comes
    # every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, 30 s at least).
    zombie_seconds: int = Field(90, ge=45, le=3600)
    flows: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["topup-standard", "backfill"]
    )
    irreversible_flows: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["submit-constants"]
    )
    irreversible_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["irreversible"]
    )
    name: str = Field("topup-recovery", pattern=r"^[a-z0-9][a-z0-9-]{0,50}$")

    @field_validator("flows", "irreversible_flows", "irreversible_tags", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


class Decision(BaseModel):
    """Whether a crashed run is rescheduled, and why (also the notification's text)."""

    recover: bool
    reason: str
    attempt: int = 0  # the attempt this reschedule is (1-based), 0 when not recovered


def attempts_of(run: FlowRun) -> int:
    try:
        return int((run.labels or {}).get(ATTEMPTS_LABEL, 0))
    except (TypeError, ValueError):
        return 0


def decide(
    run: FlowRun,
    flow_name: str,
    states: Sequence[State],
    task_names: Sequence[str],
    settings: RecoverySettings,
) -> Decision:
    """The rule: may this run be rescheduled without a person? (pure: no I/O)."""
    if run.state is None or run.state.name != "Crashed":
        return Decision(recover=False, reason="not Crashed")
    if flow_name in settings.irreversible_flows:
        return Decision(recover=False, reason=f"flow {flow_name!r} is irreversible")
    tagged = sorted(set(run.tags or []) & set(settings.irreversible_tags))
    if tagged:
        return Decision(recover=False, reason=f"tagged {', '.join(tagged)}")
    earlier = [s for s in states if s.id != run.state.id]
    before = max(earlier, key=lambda s: s.timestamp).name if earlier else None
    if before == "Suspended":
        return Decision(recover=False, reason="crashed while suspended by an operator")
    messages = [s.message or "" for s in [*states, run.state]]
    if any(IRREVERSIBLE_MARKER in m.lower() for m in messages):
        return Decision(recover=False, reason="an irreversible step was started")
    started = sorted({n for n in task_names if n.startswith(IRREVERSIBLE_TASKS)})
    if started:
        return Decision(recover=False, reason=f"irreversible task started: {started[0]}")
    if flow_name not in settings.flows:
        return Decision(recover=False, reason=f"flow {flow_name!r} is not recovered")
    done = attempts_of(run)
    if done >= settings.max_attempts:
        return Decision(recover=False, reason=f"gave up after {done} automatic reschedules")
    return Decision(recover=True, reason="crashed", attempt=done + 1)


# ------------------------------------------------------------------ detection automation


def zombie_automation(settings: RecoverySettings) -> AutomationCore:
    """Prefect's zombie-run pattern: no heartbeat nor end within ``zombie_seconds`` ->
    Crashed."""
    return AutomationCore(
        name=f"{settings.name}-crashed",
        description="Top-up: a flow run whose process stopped sending heartbeats is Crashed "
        "(deployments.recovery reschedules it)",
        enabled=True,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            # A suspension closes the window too: a suspended run's process ends on purpose.
            # (Not Paused: an in-process pause keeps its process, which keeps sending
            # heartbeats; a process that dies while paused must still be seen.)
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Suspended",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.zombie_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=Crashed().type,
                name="Crashed",
                message=f"No heartbeat for {settings.zombie_seconds}s: the flow-run process "
                "or its machine died",
            )
        ],
    )


async def ensure_detection(client: PrefectClient, settings: RecoverySettings) -> UUID:
    """Create or update the zombie automation (idempotent, by name)."""
    wanted = zombie_automation(settings)
    existing = await client.read_automations_by_name(wanted.name)
    if not existing:
        return await client.create_automation(wanted)
    keep, *extra = sorted(existing, key=lambda a: str(a.id))
    await client.update_automation(keep.id, wanted)
    for other in extra:
        await client.delete_automation(other.id)
    return keep.id


# ------------------------------------------------------------------------- the loop


class Recoverer:
    """Reads Crashed runs, applies ``decide``, reschedules and notifies."""

    def __init__(
        self,
        client: PrefectClient,
        settings: RecoverySettings,
        notify: NotificationSettings | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.notify = notify if notify is not None else NotificationSettings()
        # Decisions already notified for a run's current Crashed state (state id): a run
        # left Crashed is reported once, not on every pass.
        self._reported: set[UUID] = set()
        self._flow_names: dict[UUID, str] = {}

    async def _flow_name(self, flow_id: UUID) -> str:
        if flow_id not in self._flow_names:
            self._flow_names[flow_id] = (await self.client.read_flow(flow_id)).name
        return self._flow_names[flow_id]

    async def crashed_runs(self, only: Sequence[UUID] | None = None) -> list[FlowRun]:
        """Crashed flow runs (``only``: among these ids; tests keep to their own runs)."""
        return await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Crashed"])),
                id=FlowRunFilterId(any_=list(only)) if only is not None else None,
            ),
            limit=200,
        )

    async def decision_for(self, run: FlowRun) -> tuple[str, Decision]:
        flow_name = await self._flow_name(run.flow_id)
        states = await self.client.read_flow_run_states(run.id)
        tasks = await self.client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id])),
            limit=200,  # the API's maximum page; a run has ~30 task runs
        )
        # task_key (``step8_1_submit-<code hash>``), not the name: task runs are named for
        # people (``8.1 database submission``)
        keys = [t.task_key for t in tasks]
        return flow_name, decide(run, flow_name, states, keys, self.settings)

    async def pass_once(self, only: Sequence[UUID] | None = None) -> list[tuple[UUID, Decision]]:
        """One pass over the Crashed runs; the decisions taken (for logs and tests)."""
        out: list[tuple[UUID, Decision]] = []
        for run in await self.crashed_runs(only):
            assert run.state is not None
            if run.state.id in self._reported:
                continue
            flow_name, decision = await self.decision_for(run)
            if decision.recover:
                await self.reschedule(run, decision)
            self._reported.add(run.state.id)
            out.append((run.id, decision))
            log.info("flow run %s (%s): %s", run.name, flow_name, decision.reason)
            await self.send(run, flow_name, decision)
        return out

    async def reschedule(self, run: FlowRun, decision: Decision) -> None:
        """Label the attempt first (a crash between the two calls cannot grant an extra
        attempt), then back to Scheduled: a worker picks it up and re-attaches."""
        await self.client.update_flow_run_labels(run.id, {ATTEMPTS_LABEL: decision.attempt})
        message = RESCHEDULED_MESSAGE.format(n=decision.attempt, max=self.settings.max_attempts)
        await self.client.set_flow_run_state(run.id, Scheduled(message=message), force=True)

    async def send(self, run: FlowRun, flow_name: str, decision: Decision) -> None:
        """A notification through the webhook block of ``deployments.notifications``."""
        if not self.notify.enabled:
            return
        if decision.recover:
            subject = f"Top-up run {run.name} crashed; rescheduled automatically"
        else:
            subject = f"Top-up run {run.name} crashed; needs an operator"
        body = "\n".join(
            [
                f"flow: {flow_name}",
                f"flow_run_name: {run.name}",
                f"flow_run_id: {run.id}",
                f"recovery: {'rescheduled' if decision.recover else 'not rescheduled'}",
                f"reason: {decision.reason}",
                f"attempt: {decision.attempt} of {self.settings.max_attempts}",
            ]
        )
        try:
            block = await CustomWebhookNotificationBlock.aload(self.notify.name, client=self.client)
            await block.anotify(body, subject)
        except (ObjectNotFound, ValueError) as exc:
            log.warning("recovery notification not sent: %s", type(exc).__name__)
        except Exception:  # a webhook that is down must not stop recovery
            log.warning("recovery notification failed", exc_info=False)

    async def run_forever(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        detection = False
        while not stop.is_set():
            # The detection too is retried: a loop started while the API is away (its
            # restart, a failover) must not exit, or its supervisor would restart it in a loop.
            try:
                if not detection:
                    await ensure_detection(self.client, self.settings)
                    detection = True
                await self.pass_once()
            except Exception as exc:  # the API away (restart, failover): try again later
                log.warning("recovery pass failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), self.settings.poll_seconds)
            except TimeoutError:
                pass


async def serve(api_url: str, settings: RecoverySettings) -> None:
    async with PrefectClient(api=api_url) as client:
        await Recoverer(client, settings).run_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    settings = RecoverySettings()
    if not settings.enabled:
        log.info("recovery is off (TOPUP_RECOVERY_ENABLED=false)")
        return

    async def once() -> None:
        async with PrefectClient(api=args.api_url) as client:
            await ensure_detection(client, settings)
            for run_id, decision in await Recoverer(client, settings).pass_once():
                print(run_id, decision.model_dump_json())

    asyncio.run(once() if args.once else serve(args.api_url, settings))


if __name__ == "__main__":
    main()
