"""What a killed supervisor leaves behind, stopped from its state file.

Why apart: both a new ``topup up`` (on a data dir whose supervisor died) and ``topup down``
(when the supervisor is gone or does not stop) must end those processes, and ``topup down``
should not import the supervisor to do it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from topup_cli.processes import alive, descendants, signal_tree, wait_gone
from topup_cli.simsite import stop_leftovers
from topup_cli.state import StackState


def cleanup_dead(state: StackState) -> list[int]:
    """Stop the processes a killed supervisor left behind; the pids that survived."""
    keys = []
    for comp in state.components:
        if comp.alive():
            keys.append(comp.key)
            keys.extend(descendants(comp.pid))
    if keys:
        signal_tree(keys, signal.SIGTERM)
        if not wait_gone(keys, 10.0, lambda: None):
            signal_tree(keys, signal.SIGKILL)
            wait_gone(keys, 5.0, lambda: None)
    left = [k[0] for k in keys if alive(k)]
    if state.sim_root:
        left += stop_leftovers(Path(state.sim_root))
    return left
