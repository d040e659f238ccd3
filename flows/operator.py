"""What an operator answers when the flow pauses, and the pauses themselves.

The flow pauses in-process with ``pause_flow_run(wait_for_input=...)``: the Prefect UI renders
the RunInput model as a form (the description above it says what happened and what the
options mean); the facade resumes with the same fields as ``run_input``. Every pause has a
stable key, so a run suspended from outside and resumed replays the answers already given
instead of asking again.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal, TypeVar

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

POLL_ENV = "TOPUP_PAUSE_POLL_SECONDS"  # how often a paused flow checks for its answer

Answer = TypeVar("Answer", bound=RunInput)

# The fields the forms share: who answers, their remarks, lists of runs ("85383, 85390").
Name = Annotated[str, Field(max_length=64)]
Note = Annotated[str, Field(max_length=2000)]
RunList = Annotated[str, Field(max_length=2000, pattern=r"^[\d, ]*$")]


class OperatorDecision(RunInput):
    """A step failed with an error that needs a human."""

    action: Literal["continue", "retry", "abort"] = Field(
        description="continue: accept and go on; retry: run the step again; abort: stop the run"
    )
    name: Name = Field("", description="Who decides")
    note: Note = Field("", description="Why (recorded with the run)")


class ApprovalDecision(RunInput):
    """A step that changes shared state (reset, database submission) waits for approval."""

    decision: Literal["approve", "skip", "abort"] = Field(
        description="approve: run it; skip: go on without it; abort: stop the run"
    )
    name: Name = Field(min_length=1, description="Who approves (recorded)")
    note: Note = Field("", description="Remarks (recorded)")


class ReviewDecision(RunInput):
    """A review point after a step (``pause_after`` in the definition)."""

    action: Literal["continue", "abort"] = Field(description="continue or stop the run")
    name: Name = Field("", description="Who reviewed")
    note: Note = Field("", description="Remarks (recorded)")


class GateDecision(RunInput):
    """The date is not verified before an irreversible step: a person decides, knowingly."""

    decision: Literal["accept", "recheck", "abort"] = Field(
        description=(
            "accept: go on although the listed items are missing (recorded with your name); "
            "recheck: check again (after fixing the cause); abort: stop the run"
        )
    )
    exclude_runs: RunList = Field(
        "", description="Runs to exclude from the round's constants, comma-separated (recorded)"
    )
    name: Name = Field(min_length=1, description="Who decides (recorded)")
    note: Note = Field("", description="Why (recorded)")


class IstDecision(RunInput):
    """Step 1.3 found IST values other than 15000000: register or exclude, run by run."""

    action: Literal["decide", "retry", "abort"] = Field(
        description="decide: apply the two lists below; retry: read the values again; abort"
    )
    register_runs: RunList = Field(
        "", description="Runs to register in interval.txt anyway (15000000), comma-separated"
    )
    exclude_runs: RunList = Field(
        "", description="Runs to exclude from the round's constants, comma-separated"
    )
    name: Name = Field(min_length=1, description="Who decides (recorded)")
    note: Note = Field("", description="Why (recorded)")


class RetryDecision(RunInput):
    """A failure nobody may accept and go on from (a required report was not downloaded, the
    date has no raw data, an input is invalid)."""

    action: Literal["retry", "abort"] = Field(
        description="retry: run the step again (after fixing the cause); abort: stop the run"
    )
    name: Name = Field("", description="Who decides")
    note: Note = Field("", description="Why (recorded)")


class OutageDecision(RunInput):
    """The site could not be reached during a step an operator approved."""

    action: Literal["retry", "abort"] = Field(
        description="retry: try again (re-attaches to what already runs); abort: stop the run"
    )
    name: Name = Field("", description="Who decides")
    note: Note = Field("", description="Remarks (recorded)")


def run_list(text: str) -> list[int]:
    """``"85383, 85390"`` -> ``[85383, 85390]`` (the forms' run lists)."""
    return sorted({int(x) for x in text.replace(",", " ").split() if x.isdigit()})


class OperatorAbort(Exception):
    """The operator chose to stop the run; the message carries who and why."""


class OperatorTimeout(Exception):
    """Nobody answered a pause within the run's operator timeout."""


def poll_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get(POLL_ENV, "5")))
    except ValueError:
        return 5.0


def ask(
    model: type[Answer],
    *,
    key: str,
    description: str,
    timeout_hours: float,
    waits_for: str | None = None,
) -> Answer:
    """Pause the flow run until an operator answers with ``model``'s fields.

    ``waits_for`` (``step 7 reset approval``) goes on the run as a label first, so the
    notification and ``topup status`` can say which decision waits.
    """
    from prefect.exceptions import FlowPauseTimeout

    if not description.strip():
        # The facade and the CLI show a form once its description is stored (Prefect
        # stores it after the schema): a question without one would never be shown.
        raise ValueError(f"pause {key}: an operator question needs a description")
    if waits_for:
        label_waiting(waits_for)
    form = model.with_initial_data(description=description)
    try:
        with _ended_while_paused_stops_the_process():
            return pause_flow_run(  # type: ignore[call-overload, no-any-return]
                wait_for_input=form,
                timeout=max(1, int(timeout_hours * 3600)),
                poll_interval=poll_seconds(),  # type: ignore[arg-type]
                key=key,
            )
    except FlowPauseTimeout:
        raise OperatorTimeout(
            f"no operator answer within {timeout_hours:g} h (pause {key})"
        ) from None


def label_waiting(waits_for: str) -> None:
    """Set the run's ``topup.waits`` label (read by the waiting notification and the CLI)."""
    from prefect import get_client
    from prefect.context import FlowRunContext

    from flows.naming import WAITS_LABEL

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(ctx.flow_run.id, {WAITS_LABEL: waits_for[:200]})
    except Exception as exc:  # the pause matters, the label only helps to read it
        logging.getLogger("topup.flows").warning("could not label the pause: %s", exc)


@contextmanager
def _ended_while_paused_stops_the_process() -> Iterator[None]:
    """End this flow-run process if the run is cancelled (or otherwise ended) while paused.

    Why: Prefect's in-process pause wakes only when the run is Running again. A run cancelled
    while it waits for an operator goes straight to Cancelled (nothing runs, says the server),
    yet its process would wait on until the pause timeout (hours), holding the round's slot
    and blocking every other date of the round. Only in a process a worker started for this
    run (``PREFECT__FLOW_RUN_ID``): in-process runs (test harness) are left alone.
    """
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not run_id:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        from prefect import get_client

        log = logging.getLogger("topup.flows")
        while not stop.wait(poll_seconds()):
            try:
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(run_id).state  # type: ignore[arg-type]
            except Exception as exc:  # the API may be away for a moment: ask again
                log.debug("pause watch: %s", exc)
                continue
            if state is not None and (state.is_final() or state.is_cancelling()):
                log.warning("run %s while waiting for an operator: ending its process", state.name)
                # The engine turns SIGTERM into an exit that releases the round's slot.
                os.kill(os.getpid(), signal.SIGTERM)
                return

    watcher = threading.Thread(target=watch, name="topup-pause-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()


def pause_key(*parts: str | int) -> str:
    """A pause key Prefect accepts (lowercase letters, digits, dashes): ``step1-3-manual-1``."""
    raw = "-".join(str(p) for p in parts)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")


def who(name: str | None) -> str:
    return (name or "").strip() or "operator"
