"""The state file of a running ``topup up``: which processes, which ports, which URLs.

Why a file: ``topup down`` and ``topup status`` run in another shell and must find the
supervisor and its children again. Pids are stored with their start time (clock ticks since
boot, from /proc), so a pid reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from topup_cli.processes import PidKey, alive


def pid_key(pid: int) -> PidKey | None:
    """(pid, start ticks) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return pid, int(fields[19])


class Component(BaseModel):
    """One supervised process (or, for the sshd pair, one listener)."""

    name: str
    pid: int | None = None  # None: down (it died and is not running again yet)
    start_ticks: int | None = None
    url: str | None = None
    health_url: str | None = None
    log: str | None = None

    @property
    def key(self) -> PidKey:
        assert self.pid is not None and self.start_ticks is not None, f"{self.name} is down"
        return self.pid, self.start_ticks

    def alive(self) -> bool:
        return self.pid is not None and self.start_ticks is not None and alive(self.key)


class StackState(BaseModel):
    """What ``topup up`` started; written when all is healthy, removed on clean shutdown."""

    supervisor_pid: int
    supervisor_ticks: int
    data_dir: str
    api_url: str
    ui_url: str | None = None
    facade_url: str
    log_dir: str
    sites_dir: str
    downloads_dir: str
    topup_database_url: str
    default_site: str = "default"
    sim_root: str | None = None
    sshd_dir: str | None = None
    components: list[Component] = Field(default_factory=list)
    # Where notifications go, said without any secret ("off", "webhook https://chat.example",
    # or the local receiver's log file); None: written by a stack that did not say.
    notifications: str | None = None
    notifications_log: str | None = None
    phase: str = "starting"  # starting | up | stopping
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def supervisor_key(self) -> PidKey:
        return self.supervisor_pid, self.supervisor_ticks

    def supervisor_alive(self) -> bool:
        return alive(self.supervisor_key)

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)


def read_state(path: Path) -> StackState | None:
    try:
        return StackState.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def write_state(path: Path, state: StackState) -> None:
    """Atomic replace: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=1) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
