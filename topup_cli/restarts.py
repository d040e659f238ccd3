"""When the supervisor restarts a part of the stack, and when it gives up.

Why apart from the supervisor: the supervisor knows the parts (what runs, how each starts
again); this is the policy over them. A part whose process ended is restarted at once; a part
that still runs but fails its health probe is restarted after ``unhealthy_checks`` failures
in a row. A restart that itself fails (the new process exits, or never answers) does not end
the stack: the part is tried again after a pause that doubles with each restart (1, 2, 4, 8,
16 s), so a cause that passes (a port another process held for a moment, a server still
coming back) is outlived. Only a part restarted more than ``MAX_RESTARTS`` times within
``RESTART_WINDOW_SECONDS`` ends the stack (StackError): a crash loop, not a bad minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from topup_cli.health import Probe
from topup_cli.stack import StackError

MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 600.0
# The pause before the next restart of a part after its n-th restart within the window.
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0)
# Parts whose health route asks the Prefect server: not restarted for the server's silence.
NEEDS_SERVER = frozenset({"facade"})


@dataclass(frozen=True)
class Exited:
    """A part whose process ended: what the operator is told, and how it starts again."""

    name: str
    said: str
    restart: Callable[[], object]
    done: str | None = None  # said once it runs again


@dataclass(frozen=True)
class Check:
    """A part that answers on the network: its health probe, and how it starts again."""

    name: str
    probe: Callable[[], Probe]
    restart: Callable[[], object]


def first_line(exc: BaseException) -> str:
    """The headline of a failed start (its log tail follows on the next lines)."""
    text = str(exc).strip()
    line = text.splitlines()[0].rstrip(":") if text else ""
    if isinstance(exc, StackError):
        return line or "StackError"
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class RestartPolicy:
    """Restarts per part within the window (too many: give up), the pause before a part's
    next restart, and failed probes in a row per part."""

    def __init__(
        self,
        unhealthy_checks: int,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unhealthy_checks = unhealthy_checks
        self.say = say
        self.clock = clock
        self.restarts: dict[str, list[float]] = {}
        self.not_before: dict[str, float] = {}
        self.failures: dict[str, int] = {}

    def count_restart(self, name: str) -> None:
        """Record a restart of ``name`` now and set its pause; StackError beyond
        ``MAX_RESTARTS`` within the window."""
        now = self.clock()
        recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW_SECONDS]
        recent.append(now)
        self.restarts[name] = recent
        if len(recent) > MAX_RESTARTS:
            minutes = RESTART_WINDOW_SECONDS / 60
            raise StackError(
                f"{name} keeps exiting ({MAX_RESTARTS} restarts within {minutes:g} min); giving up"
            )
        pause = BACKOFF_SECONDS[min(len(recent), len(BACKOFF_SECONDS)) - 1]
        self.not_before[name] = now + pause

    def waiting(self, name: str) -> bool:
        """``name`` was restarted a moment ago: its next restart waits (the backoff)."""
        return self.clock() < self.not_before.get(name, float("-inf"))

    def forget(self, name: str) -> None:
        """Drop the failed probes of a part that is down on purpose."""
        self.failures.pop(name, None)

    def _restart(self, name: str, restart: Callable[[], object], done: str | None) -> None:
        """Count and run one restart. A failed start is said, and the part is left for the
        next round (after its pause)."""
        self.count_restart(name)
        try:
            restart()
        except Exception as exc:  # noqa: BLE001 - any failed start is retried; the budget ends a loop
            left = self.not_before[name] - self.clock()
            self.say(
                f"{name} did not start again: {first_line(exc)}; "
                f"trying again in {max(left, 0):.0f}s"
            )
        else:
            if done:
                self.say(done)

    def restart_exited(self, exited: Iterable[Exited]) -> bool:
        """Restart each part found ended (unless its pause runs); True if any was tried."""
        changed = False
        for part in exited:
            if self.waiting(part.name):
                continue
            self.say(part.said)
            self._restart(part.name, part.restart, part.done)
            changed = True
        return changed

    def restart_unhealthy(self, checks: Iterable[Check], stop: threading.Event) -> bool:
        """Probe each part (the Prefect server first); restart one that failed
        ``unhealthy_checks`` probes in a row. True if any was restarted."""
        changed = False
        server_down = False
        for check in checks:
            if stop.is_set():
                break
            if server_down and check.name in NEEDS_SERVER:
                continue  # its health route asks the server: judged once the server answers
            if self.waiting(check.name):
                # Restarted a moment ago: give it its pause to come up (and judge nothing
                # that asks it meanwhile).
                server_down = server_down or check.name == "prefect-server"
                continue
            result = check.probe()
            if check.name == "prefect-server":
                server_down = not result.ok
            if result.ok:
                self.forget(check.name)
                continue
            failed = self.failures[check.name] = self.failures.get(check.name, 0) + 1
            if failed < self.unhealthy_checks:
                continue
            self.forget(check.name)
            self.say(
                f"{check.name} is unhealthy: {result.reason} ({failed} probes in a row); "
                "restarting it"
            )
            self._restart(check.name, check.restart, f"{check.name} restarted")
            changed = True
        return changed
