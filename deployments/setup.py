"""Work pool and concurrency limits the deployments need, created idempotently.

Why: ``prefect deploy --all`` only registers deployments; the process work pool they point at
and the per-round global concurrency limits (one active run per round, see
``flows.round_slot``) must exist first. Running this again changes nothing that is already
right, and corrects a limit or pool concurrency someone changed by hand. With notification
settings it also creates the webhook notifications (``deployments.notifications``; off, and
logged so, when no webhook URL is configured).

    python -m deployments.setup --api-url http://127.0.0.1:4200/api --round round18
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.workers.process import ProcessWorker
from pydantic import BaseModel, Field

from deployments.notifications import (
    NotificationReport,
    NotificationSettings,
    ensure_notifications,
)
from flows.round_slot import limit_name

POOL_NAME = "topup-pool"
ROUND_LIMIT = 1

log = logging.getLogger("topup.deployments")


class SetupReport(BaseModel):
    """What ``ensure_all`` found and did (for logs and tests)."""

    pool: str
    pool_created: bool = False
    pool_updated: bool = False
    limits_created: list[str] = Field(default_factory=list)
    limits_updated: list[str] = Field(default_factory=list)
    notifications: NotificationReport | None = None


async def ensure_work_pool(
    client: PrefectClient, name: str = POOL_NAME, concurrency_limit: int | None = None
) -> tuple[bool, bool]:
    """Create the process work pool, or align its concurrency limit; (created, updated)."""
    try:
        pool = await client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        try:
            await client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=ProcessWorker.type,
                    base_job_template=template,
                    concurrency_limit=concurrency_limit,
                    description="Top-up flow runs as local processes (topup_cli.stack)",
                )
            )
        except ObjectAlreadyExists:  # created concurrently: fall through to the check
            return await ensure_work_pool(client, name, concurrency_limit)
        return True, False
    if pool.type != ProcessWorker.type:
        raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, expected process")
    if pool.concurrency_limit != concurrency_limit:
        # The API reads a null limit in an update as "leave it"; -1 is not accepted, so the
        # only way back to "no limit" is a fresh pool: refuse silently changing that.
        if concurrency_limit is None:
            log.warning("work pool %s keeps its limit %s", name, pool.concurrency_limit)
            return False, False
        await client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
        return False, True
    return False, False


async def ensure_global_limit(
    client: PrefectClient, name: str, limit: int = ROUND_LIMIT
) -> tuple[bool, bool]:
    """Create an active global concurrency limit, or fix its limit/active flag."""
    try:
        current = await client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=name, limit=limit, active=True)
            )
            return True, False
        except ObjectAlreadyExists:
            current = await client.read_global_concurrency_limit_by_name(name)
    if current.limit != limit or not current.active:
        await client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=limit, active=True)
        )
        return False, True
    return False, False


async def ensure_all(
    client: PrefectClient,
    pool: str = POOL_NAME,
    rounds: Sequence[str] = ("round18",),
    pool_limit: int | None = None,
) -> SetupReport:
    """The work pool and one ``topup-round-<round>`` limit (1) per round."""
    created, updated = await ensure_work_pool(client, pool, pool_limit)
    report = SetupReport(pool=pool, pool_created=created, pool_updated=updated)
    for round_ in dict.fromkeys(rounds):
        name = limit_name(round_)  # validates the round
        made, fixed = await ensure_global_limit(client, name, ROUND_LIMIT)
        if made:
            report.limits_created.append(name)
        if fixed:
            report.limits_updated.append(name)
    return report


async def setup(
    api_url: str,
    pool: str = POOL_NAME,
    rounds: Sequence[str] = ("round18",),
    pool_limit: int | None = None,
    notifications: NotificationSettings | None = None,
) -> SetupReport:
    """``ensure_all`` against the server at ``api_url`` (explicit: never the ambient one),
    then the notifications when settings for them are given."""
    async with PrefectClient(api=api_url) as client:
        report = await ensure_all(client, pool, rounds, pool_limit)
        if notifications is not None:
            report.notifications = await ensure_notifications(client, notifications)
        return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--pool", default=POOL_NAME)
    parser.add_argument("--round", dest="rounds", action="append", default=None)
    parser.add_argument("--pool-limit", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = asyncio.run(
        setup(
            args.api_url,
            args.pool,
            args.rounds or ["round18"],
            args.pool_limit,
            NotificationSettings(),  # TOPUP_NOTIFY_* from the environment / .env
        )
    )
    print(report.model_dump_json(indent=1))


if __name__ == "__main__":
    main()
