"""Send the steps' stdlib loggers (``topup.*``) to the Prefect run logs.

Prefect does this for ``PREFECT_LOGGING_EXTRA_LOGGERS=topup`` when it configures logging at
import; a worker that was started without it still gets the same handlers here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

TOPUP_LOGGER = "topup"


def attach_topup_loggers() -> None:
    """Give ``topup`` the handlers of Prefect's extra loggers (API + console), idempotently."""
    target = logging.getLogger(TOPUP_LOGGER)
    source = logging.getLogger("prefect.extra")
    have = {type(h) for h in target.handlers}
    for handler in source.handlers:
        if type(handler) not in have:
            target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > logging.INFO:
        target.setLevel(logging.INFO)


class _RunIdFilter(logging.Filter):
    def __init__(self, flow_run_id: str) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "flow_run_id", None) is None:
            record.flow_run_id = self.flow_run_id
        return True


@contextmanager
def logs_of_run(flow_run_id: str) -> Iterator[None]:
    """Outside a run context (state hooks), file the ``topup.*`` records under the run."""
    attach_topup_loggers()
    loggers = [logging.getLogger(n) for n in ("topup.steps", "topup.remote", TOPUP_LOGGER)]
    flt = _RunIdFilter(flow_run_id)
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)
