"""The ``topup`` CLI, the demo and the stack they run.

Prefect's anonymous usage telemetry is off in every project command: importing this package
(which every ``topup`` command, the demo and the stack's processes do before Prefect) sets
the two documented opt-outs unless the environment already says otherwise, and the
processes of the stack inherit them. Without it, the first ``topup --help`` on a terminal
printed Prefect's telemetry notice.
"""

from __future__ import annotations

import os

# Client side (the SDK's events and its first-run notice) and server side (the heartbeat).
QUIET_PREFECT = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

for _name, _value in QUIET_PREFECT.items():
    os.environ.setdefault(_name, _value)
