"""Waiting for a process the stack just started until it answers on its health route.

Why apart from ``topup_cli/health.py``: a probe asks once; a start-up asks again until an
answer, a deadline or the process's exit, and says which of those it was. The facade, the
notification receiver and the facades behind the load balancer all start this way.
"""

from __future__ import annotations

import time

from topup_cli.health import http_ok
from topup_cli.processes import ManagedProcess
from topup_cli.stack import StackError


def wait_answering(
    url: str,
    timeout: float,
    proc: ManagedProcess | None = None,
    what: str = "",
    every: float = 0.25,
) -> bool:
    """Poll ``url`` every ``every`` seconds until it answers 200 (True) or ``timeout`` passes
    (False). When ``proc`` exits first: StackError "<what> exited" with its log's tail
    (``what``: the process's name unless said)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.running():
            raise StackError(f"{what or proc.name} exited:\n{proc.log_tail()}")
        if http_ok(url):
            return True
        time.sleep(every)
    return False
