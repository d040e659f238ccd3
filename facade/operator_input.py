"""A paused run's form, translated both ways: what it asks, and the run input that answers.

Why its own module: the task detail shows the question (``waiting_for``) and ``/resume``
builds the answer (``operator_input``) from the same reading of Prefect's form schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from facade.errors import ApiError, bad_request


@dataclass(frozen=True)
class WaitingFor:
    """What a paused run asks its operator: which field, which choices, and why."""

    field: str | None
    options: list[str]
    description: str | None
    # the form's other fields a caller may send in ``inputs`` (name and note are filled in)
    fields: list[str] = dataclass_field(default_factory=list)


CHOICE_FIELDS = ("decision", "action", "outcome")


def waiting_for(form: tuple[dict[str, Any], str | None] | None) -> WaitingFor | None:
    if form is None:
        return None
    schema, description = form
    props = schema.get("properties", {})
    field = next((f for f in CHOICE_FIELDS if f in props), None)
    options = list(props[field].get("enum", [])) if field else []
    others = [f for f in props if f not in (field, "name", "note", "description")]
    return WaitingFor(field, options, description, others)


def operator_input(
    schema: dict[str, Any],
    decision: str | None,
    note: str | None,
    operator: str,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run input for the paused flow's form, recorded under the caller's name.

    Without a decision a plain "continue" is assumed (the legacy resume), but an approval
    (reset, database submission) must be given explicitly. ``inputs`` fill the form's other
    fields (runs to exclude, the ledger row a decision is about); unknown ones are refused.
    """
    wait = waiting_for((schema, None))
    if wait is None or wait.field is None:
        raise ApiError(409, "The paused run waits for an input the facade does not know")
    choice = decision or ("continue" if "continue" in wait.options else None)
    if choice not in wait.options:
        raise bad_request(
            f"This task waits for a decision: send decision ({'/'.join(wait.options)})"
        )
    props = schema.get("properties", {})
    run_input: dict[str, Any] = {wait.field: choice}
    unknown = sorted(set(inputs or {}) - set(wait.fields))
    if unknown:
        raise bad_request(
            f"This form has no field {', '.join(unknown)}"
            + (f" (its fields: {', '.join(wait.fields)})" if wait.fields else "")
        )
    run_input.update(inputs or {})
    if "name" in props:
        run_input["name"] = operator
    if "note" in props and note:
        run_input["note"] = note
    return run_input
