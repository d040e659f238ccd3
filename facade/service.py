"""The task operations under their earlier, single-module names.

Why it stays: scripts outside the facade (``bench/``) import from here; the facade itself
imports each name from the module that does the job (see facade/README.md).
"""

from facade.date_checks import guard_dates
from facade.execution_records import CONSOLE_LOG_LIMIT, execution_records, logs_by_task_run
from facade.lifecycle import cancel, pause, start
from facade.operator_input import CHOICE_FIELDS, WaitingFor, operator_input, waiting_for
from facade.resume import ResumeOutcome, resume
from facade.snapshots import Snapshot, definition_of, snapshot, snapshots
from facade.task_create import create_task, preference_defaults, workflow_ref

__all__ = [
    "CHOICE_FIELDS",
    "CONSOLE_LOG_LIMIT",
    "ResumeOutcome",
    "Snapshot",
    "WaitingFor",
    "cancel",
    "create_task",
    "definition_of",
    "execution_records",
    "guard_dates",
    "logs_by_task_run",
    "operator_input",
    "pause",
    "preference_defaults",
    "resume",
    "snapshot",
    "snapshots",
    "start",
    "waiting_for",
    "workflow_ref",
]
