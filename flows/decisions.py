"""One shape for every operator decision: ask, record who chose what, stop on abort.

Each pause of a run (a manual error, an approval, the gate before the reset, the IST anomaly,
a lost site, a review) ends the same way: the answer names a person, the choice is recorded
with the run, and ``abort`` ends the run with a message saying who stopped it, where and
why. Kept in one place so that the records and the messages of all pauses stay alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from logging import Logger, LoggerAdapter
from typing import Any, Generic

from flows import recording
from flows.definitions import StepDefinition
from flows.naming import waiting_for
from flows.operator import Answer, OperatorAbort, ask, who
from flows.recording import RunRecord

# Every form names its choice one of these (``action: continue``, ``decision: approve``, ...).
CHOICE_FIELDS = ("action", "decision", "outcome")


def choice_of(answer: Any) -> str:
    """What the operator chose, whatever the form calls that field."""
    for name in CHOICE_FIELDS:
        value = getattr(answer, name, None)
        if isinstance(value, str):
            return value
    raise TypeError(f"{type(answer).__name__} has none of the choice fields {CHOICE_FIELDS}")


@dataclass(frozen=True)
class Decided(Generic[Answer]):
    """An operator's answer, with the person (``who``) and the choice read off it."""

    answer: Answer
    by: str
    choice: str

    @property
    def note(self) -> str:
        return str(getattr(self.answer, "note", ""))

    def noted(self, fact: str, sep: str = " | ") -> str:
        """``fact``, then the operator's note when they wrote one."""
        return fact + (f"{sep}{self.note}" if self.note else "")

    def stop_if_aborted(self, where: str) -> None:
        """End the run when the choice is ``abort``: ``aborted by <who> <where>: <note>``."""
        if self.choice == "abort":
            raise OperatorAbort(self.noted(f"aborted by {self.by} {where}", sep=": "))


class Decisions:
    """The operator's side of one flow run: its pauses and the record of what was chosen."""

    def __init__(
        self,
        rec: RunRecord,
        steps: Sequence[StepDefinition],
        timeout_hours: float,
        log: Logger | LoggerAdapter[Any],
    ) -> None:
        self.rec = rec
        self.steps = list(steps)
        self.timeout_hours = timeout_hours
        self.log = log

    def ask(self, model: type[Answer], *, key: str, description: str) -> Answer:
        """Pause for ``model``'s answer once every artifact so far is visible beside the form."""
        recording.flush(self.rec)
        return ask(
            model,
            key=key,
            description=description,
            timeout_hours=self.timeout_hours,
            waits_for=waiting_for(key, self.steps),
        )

    def hear(self, model: type[Answer], *, key: str, description: str) -> Decided[Answer]:
        """Ask, and read who answered and what they chose (nothing recorded yet)."""
        answer = self.ask(model, key=key, description=description)
        return Decided(answer, who(getattr(answer, "name", "")), choice_of(answer))

    def record(
        self,
        step: StepDefinition,
        got: Decided[Any],
        kind: str,
        *,
        decision: str | None = None,
        note: str | None = None,
        task_name: str | None = None,
        error_code: int | None = None,
    ) -> None:
        """Store the decision with the run: by default the choice and the operator's note."""
        recording.record_decision(
            self.rec,
            step,
            kind=kind,
            decision=got.choice if decision is None else decision,
            decided_by=got.by,
            note=got.note if note is None else note,
            task_name=task_name,
            error_code=error_code,
        )

    def decide(
        self, model: type[Answer], step: StepDefinition, *, kind: str, key: str, description: str
    ) -> Decided[Answer]:
        """Ask and record the choice under ``kind``; the caller then says where an abort stops."""
        got = self.hear(model, key=key, description=description)
        self.record(step, got, kind)
        return got

    def reports(self) -> str:
        """The run's reports as signed browser links (the forms say: review them first)."""
        return recording.reports_markdown(self.rec)
