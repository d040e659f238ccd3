"""The parameters ``run``, ``backfill`` and ``submit`` give the flow run they start.

Why one place: the three commands name the definition, pre-approve and pass the operator's
options the same way; each says here only what is its own.
"""

from __future__ import annotations

import getpass
from typing import Any


def workflow_params(definition: Any, round: str, site: str) -> dict[str, Any]:
    """The round, the site and the definition (name and version) the run follows."""
    return {
        "round": round,
        "site": site,
        "workflow": definition.name,
        "workflow_version": definition.version,
    }


def approval(approve: bool, approved_by: str | None, **approved: bool) -> dict[str, Any]:
    """What ``--approve`` pre-approves, with the approver on record (default: the login
    name); nothing without ``--approve`` (the run asks instead)."""
    if not approve:
        return {}
    return {**approved, "approved_by": approved_by or getpass.getuser()}


def given(**options: Any) -> dict[str, Any]:
    """The options the operator set; the flow's own defaults stand for the others."""
    return {name: value for name, value in options.items() if value is not None}
