"""Workflow definitions as data: JSON files validated by pydantic on load.

Why data: operators change waits, retries or which checks run without touching code, and
several versions coexist (each flow run records the one it ran). The packaged files live next
to this module; ``TOPUP_WORKFLOWS_DIR`` may name one more directory (site-specific or test
definitions). A file holds one definition; (name, version) must be unique across both.

Public API (used by the flows and by the facade):
``load(name, version=None)``, ``list_definitions()``, ``WorkflowDefinition.validate_parameters``.
"""

from __future__ import annotations

from flows.definitions.loader import (
    DefinitionError,
    clear_cache,
    definition_dirs,
    list_definitions,
    load,
    source_name,
    unknown_workflow_message,
)
from flows.definitions.models import (
    ParameterSpec,
    StepDefinition,
    WorkflowDefinition,
)

__all__ = [
    "DefinitionError",
    "ParameterSpec",
    "StepDefinition",
    "WorkflowDefinition",
    "clear_cache",
    "definition_dirs",
    "list_definitions",
    "load",
    "unknown_workflow_message",
    "source_name",
]
