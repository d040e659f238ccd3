"""The ``@flow`` the project's flows are declared with, so that they agree on what Prefect sees.

- A run is named from its own parameters (``flows/naming.py``), e.g.
  ``round18-250624-topup-standard-1.2.0``, ``round18-submit-constants-85383-85390`` or
  ``round18-backfill-250601-250624``, so an operator finds it by what it is.
- Its result is persisted: a retried or resumed run finds what it already did.
- When it is cancelled or crashes, ``on_stop`` (``flows/hooks.py``) removes what it left
  running on the remote site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, flow

from flows.naming import flow_run_name_of_context

P = ParamSpec("P")
R = TypeVar("R")


def topup_flow(
    name: str, on_stop: Callable[..., None] | None = None
) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """``@flow`` for the flow ``name``; ``on_stop`` runs when a run is cancelled or crashes."""

    def run_name() -> str:
        return flow_run_name_of_context(name)

    hooks: dict[str, Any] = (
        {"on_cancellation": [on_stop], "on_crashed": [on_stop]} if on_stop else {}
    )
    return flow(name=name, flow_run_name=run_name, persist_result=True, **hooks)
