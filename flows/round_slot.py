"""One active flow run per round: a Prefect global concurrency limit named by round.

Why: the dates of a round share cumulative remote files (``interval.txt``, ``window.dat``,
``ets_cut.txt``, ``hist/``), so two dates of one round must never run at the same time;
different rounds may. The limit ``topup-round-<round>`` (limit 1) is created when missing and
held for the whole run through a lease that Prefect renews in the background. If the process
dies, the lease expires after ``TOPUP_ROUND_LEASE_SECONDS`` (default 60, Prefect's minimum)
and the next run of the round may start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger

from steps.remote import validate

LEASE_ENV = "TOPUP_ROUND_LEASE_SECONDS"


def limit_name(round: str) -> str:
    return f"topup-round-{validate.round_(round)}"


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit when it does not exist yet (race-safe)."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
            except ObjectAlreadyExists:
                pass
            return
        if existing.limit != limit or not existing.active:
            get_run_logger().warning(
                "concurrency limit %s has limit %s (active=%s); rounds rely on limit %s",
                name,
                existing.limit,
                existing.active,
                limit,
            )


def lease_seconds() -> float:
    try:
        return max(60.0, float(os.environ.get(LEASE_ENV, "60")))
    except ValueError:
        return 60.0


@contextmanager
def round_slot(round: str, flow_run_id: str) -> Iterator[None]:
    """Hold the round's slot for the duration of the block (waits while another run has it)."""
    name = limit_name(round)
    ensure_limit(name)
    log = get_run_logger()
    log.info("waiting for the round slot %s", name)
    with concurrency(
        name,
        occupy=1,
        lease_duration=lease_seconds(),
        strict=True,
        holder=ConcurrencyLeaseHolder(type="flow_run", id=UUID(flow_run_id)),
    ):
        log.info("holding the round slot %s", name)
        yield
