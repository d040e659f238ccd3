"""The outputs store: what every flow run produced, verified and decided, in SQLModel tables.

Shared by the flows (writers) and the facade (reader). SQLite by default
(``var/topup.db``), any SQLAlchemy URL through ``TOPUP_DATABASE_URL``. Only the tables of
this package are created here (``STORE_TABLES``); the facade creates its own.
"""

from store.db import database_url, get_engine, reset_engines, session
from store.models import (
    STORE_TABLES,
    OperatorDecisionRow,
    StepOutput,
    StepRun,
    WorkflowRun,
)

__all__ = [
    "STORE_TABLES",
    "OperatorDecisionRow",
    "StepOutput",
    "StepRun",
    "WorkflowRun",
    "database_url",
    "get_engine",
    "reset_engines",
    "session",
]
