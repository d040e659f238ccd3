"""Short exponential backoff for transient faults of the remote layer.

A brief outage (a jump host restarting, an SFTP channel dying) should cost seconds, not the
task-level retry's minute: the SSH transport tries again after 0.5, 1, 2, 4, 8 s ... while
the sum of the waits stays within ``SiteSettings.ssh_retry_seconds``, logging each retry at
WARNING with its cause. Only then does the failure reach the step and its task retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from steps.remote.errors import RemoteError

T = TypeVar("T")

FIRST_DELAY = 0.5
MAX_DELAY = 8.0


def backoff_delays(
    budget: float, first: float = FIRST_DELAY, cap: float = MAX_DELAY
) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 8 ... seconds while their running sum stays within ``budget``."""
    spent, delay = 0.0, first
    while spent + delay <= budget + 1e-9:
        yield delay
        spent += delay
        delay = min(delay * 2, cap)


@dataclass
class Recovery:
    """What one call cost: re-attempts made and seconds between first failure and the end."""

    retries: int = 0
    lost_seconds: float = 0.0


def with_backoff(
    what: str,
    attempt: Callable[[], T],
    *,
    may_retry: Callable[[RemoteError], bool],
    budget: float,
    log: logging.Logger,
    record: Callable[[Recovery], None] | None = None,
) -> T:
    """``attempt()``, tried again after a backoff delay while ``may_retry`` allows it.

    When the budget is spent the last error is raised, its message saying how many attempts
    were made and over how long.
    """
    delays = backoff_delays(budget)
    tries = 0
    first_failure: float | None = None
    lost_until = 0.0  # the start of the last attempt, or the moment of giving up
    try:
        while True:
            tries += 1
            lost_until = time.monotonic()
            try:
                return attempt()
            except RemoteError as exc:
                now = lost_until = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                if not may_retry(exc):
                    raise
                delay = next(delays, None)
                if delay is None:
                    spent = now - first_failure
                    log.warning(
                        "%s: giving up after %d attempts in %.1f s: %s", what, tries, spent, exc
                    )
                    _append(exc, f"(gave up after {tries} attempts in {spent:.1f} s)")
                    raise
                log.warning(
                    "%s failed (attempt %d): %s; retrying in %.1f s", what, tries, exc, delay
                )
                time.sleep(delay)
    finally:
        if first_failure is not None and tries > 1 and record is not None:
            record(Recovery(tries - 1, max(0.0, lost_until - first_failure)))


def _append(exc: BaseException, note: str) -> None:
    """Add ``note`` to a one-message exception (what str() shows, and what is pickled)."""
    if len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} {note}",)
