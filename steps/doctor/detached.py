"""The ``detached`` check: a process started detached survives the disconnect of every
connection and is re-attached from a new one (what steps 1 and 8 rely on)."""

from __future__ import annotations

import time

from steps.doctor.model import Check
from steps.doctor.options import DoctorOptions
from steps.remote.site import RemoteSite

PROBE_KEY = "doctor-probe"
PROBE_WORD = "survived"


def check_detached(site: RemoteSite, scratch: str, o: DoctorOptions) -> Check:
    """Start a short probe in ``scratch`` over ``site``, close ``site``, re-attach to it."""
    evidence: list[str] = []
    try:
        started = site.start_detached(
            PROBE_KEY, f"sleep {o.probe_seconds:g}; echo {PROBE_WORD}", scratch
        )
        evidence.append(f"started under setsid nohup (pid {started.pid}) in {scratch}")
    finally:
        site.close()  # the disconnect: every connection of this run is closed
    evidence.append("disconnected")
    time.sleep(o.linger_seconds)  # let a logout reaper (logind, AFS) act first
    again = site.detached(PROBE_KEY)  # opens a new connection
    evidence.append(f"new connection: probe {again.state}")
    done = site.wait_detached(PROBE_KEY, timeout=o.probe_seconds + o.timeout, poll=0.2)
    if again.state == "missing":
        return _failed("probe lost its control dir", evidence)
    if done.exit_code != 0 or PROBE_WORD not in done.stdout:
        evidence.append(f"probe ended with exit {done.exit_code}, output {done.stdout!r:.60}")
        return _failed("a detached process did not survive the disconnect", evidence)
    evidence.append(f"re-attached; probe finished with exit 0 and printed {PROBE_WORD!r}")
    return Check(
        name="detached",
        status="pass",
        summary="a detached process survives a disconnect and is re-attached",
        evidence=evidence,
    )


def _failed(summary: str, evidence: list[str]) -> Check:
    return Check(
        name="detached",
        status="fail",
        summary=summary,
        evidence=evidence,
        fix="processes are killed at logout: ask the site admins for lingering "
        "(loginctl enable-linger / KillUserProcesses=no), or run the flows from a "
        "persistent session; detached commands rely on it",
    )
