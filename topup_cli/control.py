"""``topup status`` and ``topup down``: look at and stop a stack from another shell.

Both work from the state file alone. ``down`` asks the supervisor to stop (SIGTERM, the
same as Ctrl-C in its terminal) and waits for it; if the supervisor is gone or does not
finish in time, it stops the recorded processes (and their descendants) itself.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from topup_cli.health import http_ok, ssh_handshake
from topup_cli.leftovers import cleanup_dead
from topup_cli.state import StackState, read_state


class ComponentStatus(BaseModel):
    name: str
    pid: int | None  # None: down, waiting for its restart
    alive: bool
    url: str | None
    healthy: bool


class StackStatus(BaseModel):
    running: bool
    phase: str | None = None
    supervisor_pid: int | None = None
    data_dir: str | None = None
    api_url: str | None = None
    ui_url: str | None = None
    facade_url: str | None = None
    log_dir: str | None = None
    notifications: str | None = None
    notifications_log: str | None = None
    components: list[ComponentStatus] = []

    @property
    def all_healthy(self) -> bool:
        return (
            self.running
            and self.phase == "up"
            and bool(self.components)
            and all(c.alive and c.healthy for c in self.components)
        )


def _healthy(state_comp_url: str | None, health_url: str | None, alive: bool) -> bool:
    """A part that listens is healthy only if it answers (an SSH banner, a health route)."""
    if not alive:
        return False
    if health_url:
        return http_ok(health_url)
    if state_comp_url and state_comp_url.startswith("ssh://"):
        where = urlsplit(state_comp_url)
        return ssh_handshake(where.hostname or "127.0.0.1", where.port or 22).ok
    return True


def stack_status(state_file: Path) -> StackStatus:
    state = read_state(state_file)
    if state is None:
        return StackStatus(running=False, data_dir=str(state_file.parent.resolve()))
    running = state.supervisor_alive()
    comps = []
    for c in state.components:
        alive = c.alive()
        comps.append(
            ComponentStatus(
                name=c.name,
                pid=c.pid,
                alive=alive,
                url=c.url,
                healthy=_healthy(c.url, c.health_url, alive),
            )
        )
    return StackStatus(
        running=running,
        phase=state.phase if running else "dead",
        supervisor_pid=state.supervisor_pid,
        data_dir=state.data_dir,
        api_url=state.api_url,
        ui_url=state.ui_url,
        facade_url=state.facade_url,
        log_dir=state.log_dir,
        notifications=state.notifications,
        notifications_log=state.notifications_log,
        components=comps,
    )


def stop_stack(state_file: Path, timeout: float = 120.0) -> tuple[StackState | None, list[int]]:
    """Stop the stack of ``state_file``; (its state, pids still alive afterwards)."""
    state = read_state(state_file)
    if state is None:
        return None, []
    if state.supervisor_alive():
        try:
            os.kill(state.supervisor_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while state.supervisor_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        if state.supervisor_alive():
            try:
                os.kill(state.supervisor_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    left = cleanup_dead(state)
    if not state.supervisor_alive():
        state_file.unlink(missing_ok=True)
    return state, left
