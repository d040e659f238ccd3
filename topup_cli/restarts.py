"""When the supervisor restarts a part of the stack, and when it gives up.

Why apart from the supervisor: the supervisor knows the parts (what runs, how each starts
again); this is the policy over them. A part whose process ended is restarted at once; a part
that still runs but fails its health probe is restarted after ``unhealthy_checks`` failures
in a row; any part restarted more than ``MAX_RESTARTS`` times ends the stack (StackError).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from topup_cli.health import Probe
from topup_cli.stack import StackError

MAX_RESTARTS = 5
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


class RestartPolicy:
    """Restarts per part (too many: give up) and failed probes in a row per part."""

    def __init__(self, unhealthy_checks: int, say: Callable[[str], None]) -> None:
        self.unhealthy_checks = unhealthy_checks
        self.say = say
        self.restarts: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def count_restart(self, name: str) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        if self.restarts[name] > MAX_RESTARTS:
            raise StackError(f"{name} keeps exiting ({MAX_RESTARTS} restarts); giving up")

    def forget(self, name: str) -> None:
        """Drop the failed probes of a part that is down on purpose."""
        self.failures.pop(name, None)

    def restart_exited(self, exited: Iterable[Exited]) -> bool:
        """Restart each part as it is found ended; True if any was."""
        changed = False
        for part in exited:
            self.count_restart(part.name)
            self.say(part.said)
            part.restart()
            if part.done:
                self.say(part.done)
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
            self.count_restart(check.name)
            self.say(
                f"{check.name} is unhealthy: {result.reason} ({failed} probes in a row); "
                "restarting it"
            )
            check.restart()
            self.say(f"{check.name} restarted")
            changed = True
        return changed
