"""Operator notifications: Prefect automations that post to a webhook when a run needs a human.

Why automations and not flow hooks: the Prefect server sees every state change, including
those of runs whose process died (Crashed) or that were paused from outside, so one place
notifies for all of them and nothing depends on a flow-run process being alive.

What is created (idempotently, by name, through the Prefect API):

- a ``CustomWebhookNotificationBlock`` named ``<name>`` whose URL and header values are only
  template placeholders; the real values sit in the block's ``secrets`` (a ``SecretDict``:
  obfuscated when read back through the API or shown in the UI, never logged here);
- one automation per kind of event, ``<name>-failed`` (Failed, Crashed, TimedOut, and
  Unverified: a run that ended with required outputs missing), ``<name>-waiting`` (Paused,
  Suspended: the run waits for an operator's input), ``<name>-aborted`` (Cancelled: an
  operator's abort, with who and why in the message) and ``<name>-completed``, for flow runs
  of the configured flows. The state's message (what is missing, who aborted) is in the
  subject and the body.

Without a webhook URL nothing is created (and that is logged); automations made earlier are
left alone unless ``remove_notifications`` is called (``--remove`` on the command line).

    TOPUP_NOTIFY_WEBHOOK_URL=https://chat.example/hooks/abc \
    python -m deployments.notifications --api-url http://127.0.0.1:4200/api
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from flows.naming import WAITS_LABEL

log = logging.getLogger("topup.deployments.notifications")

Kind = Literal["failed", "waiting", "aborted", "completed"]
KINDS: tuple[Kind, ...] = ("failed", "waiting", "aborted", "completed")

# Flow-run state names (the server emits ``prefect.flow-run.<state name>``) per kind.
STATE_NAMES: dict[Kind, tuple[str, ...]] = {
    "failed": ("Failed", "Crashed", "TimedOut", "Unverified"),
    "waiting": ("Paused", "Suspended"),
    "aborted": ("Cancelled",),
    "completed": ("Completed",),
}

# What the run is, for every subject: "round18 250624" (the date when the run has one).
_WHAT = (
    "{{ flow_run.parameters.get('round') or '' }}"
    "{% if flow_run.parameters.get('date') %} {{ flow_run.parameters.get('date') }}{% endif %}"
)
_MESSAGE = "{{ (flow_run.state.message or '')[:200] }}"
# The decision a paused run waits for: the label the flow sets before it pauses
# (flows.naming.WAITS_LABEL, e.g. "step 7 reset approval").
_WAITS = "{{ (flow_run.labels or {}).get('" + WAITS_LABEL + "') or 'a decision' }}"

SUBJECTS: dict[Kind, str] = {
    "failed": f"Top-up {_WHAT} ended "
    "{{ event.resource['prefect.state-name'] }}: " + _MESSAGE + " (run {{ flow_run.name }})",
    "waiting": f"Top-up {_WHAT} waits for an operator: {_WAITS} (run {{{{ flow_run.name }}}})",
    # An operator's abort says "aborted by <who> ...: <why>"; any other cancellation (the UI's
    # Cancel button, the facade) is said as such.
    "aborted": "{% if 'aborted by' in (flow_run.state.message or '') %}"
    f"Top-up {_WHAT} {_MESSAGE}"
    "{% else %}"
    f"Top-up {_WHAT} was cancelled: {_MESSAGE}"
    "{% endif %} (run {{ flow_run.name }})",
    "completed": f"Top-up {_WHAT} completed (run {{{{ flow_run.name }}}})",
}

# Rendered by the server's actions service (Jinja, sandboxed); one fact per line so that
# people and scripts can both read it.
BODY = "\n".join(
    [
        "flow: {{ flow.name }}",
        "flow_run_name: {{ flow_run.name }}",
        "flow_run_id: {{ flow_run.id }}",
        "state: {{ event.resource['prefect.state-name'] }}",
        "state_message: {{ flow_run.state.message or '' }}",
        "round: {{ flow_run.parameters.get('round') or '' }}",
        "date: {{ flow_run.parameters.get('date') or '' }}",
        "waits_for: {% if event.resource['prefect.state-name'] in ('Paused', 'Suspended') %}"
        + _WAITS
        + "{% endif %}",
        "parameters: {{ flow_run.parameters | tojson }}",
        "event: {{ event.event }} at {{ event.occurred }}",
        "ui: {{ flow_run | ui_url }}",
    ]
)

URL_SECRET = "webhook_url"


class NotificationSettings(BaseSettings):
    """Where notifications go (environment prefix ``TOPUP_NOTIFY_``)."""

    model_config = SettingsConfigDict(
        env_prefix="TOPUP_NOTIFY_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # No URL: notifications are off. A secret: chat webhooks carry their token in the URL.
    webhook_url: SecretStr | None = None
    # Extra request headers, JSON in the environment: '{"Authorization": "Bearer ..."}'.
    webhook_headers: dict[str, SecretStr] = Field(default_factory=dict)
    webhook_method: Literal["POST", "PUT"] = "POST"
    webhook_timeout: float = Field(10.0, gt=0, le=120)
    # Block name, and prefix of the automations' names.
    name: str = Field("topup-notify", pattern=r"^[a-z0-9][a-z0-9-]{0,50}$")
    # Which events notify: comma-separated in the environment.
    on: Annotated[list[Kind], NoDecode] = Field(default_factory=lambda: list(KINDS))
    # Flows whose runs notify (available-dates runs are short queries: not by default).
    flows: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["topup-standard", "backfill", "submit-constants"]
    )

    @field_validator("on", "flows", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @property
    def enabled(self) -> bool:
        return self.webhook_url is not None and bool(self.webhook_url.get_secret_value())

    def automation_name(self, kind: Kind) -> str:
        return f"{self.name}-{kind}"


class NotificationReport(BaseModel):
    """What ``ensure_notifications`` did (for logs and tests; holds no secret)."""

    enabled: bool
    block_id: UUID | None = None
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    automation_ids: dict[str, UUID] = Field(default_factory=dict)


def webhook_block(settings: NotificationSettings) -> CustomWebhookNotificationBlock:
    """The block: URL and header values only as ``{{placeholders}}`` filled from secrets."""
    assert settings.webhook_url is not None
    secrets = {URL_SECRET: settings.webhook_url.get_secret_value()}
    headers: dict[str, str] = {}
    for i, (header, value) in enumerate(sorted(settings.webhook_headers.items())):
        key = f"header_{i}"
        secrets[key] = value.get_secret_value()
        headers[header] = "{{" + key + "}}"
    return CustomWebhookNotificationBlock(
        name=settings.name,
        url="{{" + URL_SECRET + "}}",
        method=settings.webhook_method,
        json_data={
            "text": "{{subject}}\n{{body}}",
            "subject": "{{subject}}",
            "body": "{{body}}",
            "source": "{{name}}",
        },
        headers=headers or None,
        timeout=settings.webhook_timeout,
        secrets=secrets,  # type: ignore[arg-type]  # pydantic turns it into a SecretDict
    )


def automation(settings: NotificationSettings, kind: Kind, block_id: UUID) -> AutomationCore:
    """The automation of one kind: any matching flow-run state event sends one notification."""
    return AutomationCore(
        name=settings.automation_name(kind),
        description=f"Top-up: notify {settings.name} when a flow run is "
        + "/".join(STATE_NAMES[kind])
        + " (deployments.notifications)",
        enabled=True,
        trigger=EventTrigger(
            expect={f"prefect.flow-run.{state}" for state in STATE_NAMES[kind]},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={  # type: ignore[arg-type]
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(settings.flows),
            },
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECTS[kind], body=BODY)],
    )


async def _upsert(client: PrefectClient, wanted: AutomationCore) -> tuple[UUID, bool]:
    """Create or update the automation named ``wanted.name``; (id, created). Duplicates of the
    name (made by hand or by a race) are removed so that one event notifies once."""
    existing = await client.read_automations_by_name(wanted.name)
    if not existing:
        return await client.create_automation(wanted), True
    keep, *extra = sorted(existing, key=lambda a: str(a.id))
    await client.update_automation(keep.id, wanted)
    for other in extra:
        await client.delete_automation(other.id)
    return keep.id, False


def _where(settings: NotificationSettings) -> str:
    """Scheme and host of the webhook: enough to say where, nothing secret (path, query)."""
    assert settings.webhook_url is not None
    parts = urlsplit(settings.webhook_url.get_secret_value())
    return f"{parts.scheme}://{parts.hostname or '?'}"


async def ensure_notifications(
    client: PrefectClient, settings: NotificationSettings
) -> NotificationReport:
    """The webhook block and one automation per configured kind (idempotent)."""
    if not settings.enabled:
        log.info(
            "notifications are off: TOPUP_NOTIFY_WEBHOOK_URL is not set, no automation created"
        )
        return NotificationReport(enabled=False)
    block_id = await webhook_block(settings).asave(settings.name, overwrite=True, client=client)
    report = NotificationReport(enabled=True, block_id=block_id)
    for kind in KINDS:
        name = settings.automation_name(kind)
        if kind not in settings.on:
            await _delete_named(client, name)
            continue
        automation_id, created = await _upsert(client, automation(settings, kind, block_id))
        report.automation_ids[name] = automation_id
        (report.created if created else report.updated).append(name)
    log.info(
        "notifications to %s on %s for flows %s (block %s)",
        _where(settings),
        ", ".join(k for k in KINDS if k in settings.on),
        ", ".join(settings.flows),
        settings.name,
    )
    return report


async def _delete_named(client: PrefectClient, name: str) -> list[UUID]:
    gone = []
    for found in await client.read_automations_by_name(name):
        await client.delete_automation(found.id)
        gone.append(found.id)
    return gone


async def remove_notifications(client: PrefectClient, settings: NotificationSettings) -> list[UUID]:
    """Delete this configuration's automations and block; the ids of the automations removed."""
    gone: list[UUID] = []
    for kind in KINDS:
        gone += await _delete_named(client, settings.automation_name(kind))
    try:
        block = await client.read_block_document_by_name(
            settings.name, CustomWebhookNotificationBlock.get_block_type_slug()
        )
    except ObjectNotFound:
        return gone
    await client.delete_block_document(block.id)
    log.info("notifications %s removed (%d automations)", settings.name, len(gone))
    return gone


async def setup_notifications(
    api_url: str, settings: NotificationSettings, remove: bool = False
) -> NotificationReport:
    """``ensure_notifications`` (or removal) against the server at ``api_url``."""
    async with PrefectClient(api=api_url) as client:
        if remove:
            await remove_notifications(client, settings)
            return NotificationReport(enabled=False)
        return await ensure_notifications(client, settings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--remove", action="store_true", help="delete the automations and block")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = asyncio.run(setup_notifications(args.api_url, NotificationSettings(), args.remove))
    print(report.model_dump_json(indent=1))


if __name__ == "__main__":
    main()
