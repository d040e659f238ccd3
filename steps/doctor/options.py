"""The doctor's thresholds, apart from the checks so that every check module can read them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class DoctorOptions:
    """Thresholds of the verdicts (defaults suit IHEP) and the clock to compare against."""

    round: str | None = None  # default: the site's round
    warn_free_mb: int = 2048
    min_free_mb: int = 200
    warn_skew_seconds: float = 10.0
    max_skew_seconds: float = 300.0  # Kerberos refuses tickets beyond 5 minutes
    token_warn_hours: float = 12.0
    probe_seconds: float = 2.0  # how long the detached probe runs
    linger_seconds: float = 1.0  # after the disconnect, before re-attaching
    timeout: float = 60.0
    clock: Callable[[], float] = field(default=time.time)
