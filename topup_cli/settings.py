"""Settings of the ``topup`` CLI and the demo: where the stack keeps its state, which ports.

Why pydantic-settings: an operator sets them once in the environment (prefix
``TOPUP_STACK_``, e.g. ``TOPUP_STACK_DATA_DIR=/srv/topup``) and every command — ``up``,
``status``, ``run``, ``down`` — agrees on the same data dir without repeating options.
Port 0 means "any free port"; a busy preferred port falls back to a free one (the state
file records what was used, so the other commands still find it).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CliSettings(BaseSettings):
    """Where ``topup up`` runs the stack and how the other commands reach it."""

    model_config = SettingsConfigDict(env_prefix="TOPUP_STACK_", extra="ignore")

    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    prefect_port: int = Field(4200, ge=0, le=65535)
    facade_port: int = Field(5000, ge=0, le=65535)
    ui: bool = True
    rounds: list[str] = Field(default_factory=lambda: ["round18", "round17"])
    # Name of the site file ``--sim`` writes into the stack's TOPUP_SITES_DIR (it also
    # becomes the stack's ``default`` site, so facade-created runs use the simulation).
    sim_site_name: str = "sim"
    # Process workers `topup up` starts on this machine; 0 when workers run only on other
    # machines (docs/operations.md), e.g. next to an HA stack.
    workers: int = Field(1, ge=0, le=16)
    # Flow runs one worker runs at a time (none: no limit).
    worker_limit: int | None = Field(None, ge=1)
    # How often a paused flow run checks for the operator's answer (flows/operator.py).
    pause_poll_seconds: float = Field(1.0, gt=0)
    # Health probes of `topup up` (topup_cli/health.py): every health_seconds each part that
    # listens is asked to answer (an SSH banner, a health route) within health_timeout; after
    # unhealthy_checks failed probes in a row it is restarted. Generous by default: a SQLite
    # server busy with a burst of runs must not be mistaken for a hung one.
    health_seconds: float = Field(5.0, gt=0)
    health_timeout: float = Field(5.0, gt=0)
    unhealthy_checks: int = Field(3, ge=1)
    # Port of the local notification receiver of `topup up --sim` (0: any free port).
    notify_port: int = Field(0, ge=0, le=65535)

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"
