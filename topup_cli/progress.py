"""Live progress of one flow run in the terminal: a bar per step, the latest log line, and
the operator's answer when the run pauses for input.

Why poll the API: the CLI is just another Prefect client, like the UI — whatever it shows
(task-run states, logs, pause forms) is what Prefect recorded. On a terminal the steps are
rich progress bars; otherwise (pipes, CI, tests) each change is printed as one line.
"""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import LogFilterFlowRunId as _LogRunId
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.client.schemas.sorting import LogSort, TaskRunSort
from prefect.exceptions import ObjectNotFound
from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Column, Table
from rich.text import Text

from flows.definitions import WorkflowDefinition
from flows.naming import task_of

FINISHED_OK = ("Completed", "Cached")


@dataclass
class PauseRequest:
    """What a paused run waits for: the RunInput's JSON schema and the description."""

    key: str
    schema: dict[str, Any]
    description: str


@dataclass
class StepView:
    id: str
    label: str
    title: str
    tasks: list[str]
    states: dict[str, str] = field(default_factory=dict)  # task name -> latest state name

    @property
    def done(self) -> int:
        return sum(1 for t in self.tasks if self.states.get(t) in FINISHED_OK)

    @property
    def status(self) -> str:
        names = [self.states[t] for t in self.tasks if t in self.states]
        if not names:
            return "Pending"
        for s in ("Running", "Failed", "Crashed", "AwaitingRetry", "Retrying", "Cancelled"):
            if s in names:
                return s
        if self.done == len(self.tasks):
            return "Cached" if all(n == "Cached" for n in names) else "Completed"
        return names[-1] if len(names) == len(self.tasks) else "Running"


def base_task_name(task: TaskRun) -> str:
    """``step1_1`` of a task run (its name is the step's label and title, for people)."""
    return task_of(task.task_key)


Answerer = Callable[[PauseRequest], dict[str, Any] | None]
# Column of the step titles on a terminal: titles wrap there (never cut) and share the width
# left by the label, bar, count and state columns.
TITLE_COLUMN = Column(ratio=1, no_wrap=False, overflow="fold", min_width=20)


class RunWatcher:
    """Follow a flow run of ``definition`` until it is final."""

    def __init__(
        self,
        client: SyncPrefectClient,
        run_id: UUID,
        definition: WorkflowDefinition,
        console: Console,
        answer: Answerer | None = None,
        ui_run_url: str | None = None,
        interval: float = 0.5,
        reports_folder: Callable[[], Path | None] | None = None,
    ) -> None:
        self.client = client
        # where the run's reports are here (printed once per pause: "review the reports")
        self.reports_folder = reports_folder
        self.run_id = run_id
        self.console = console
        self.answer = answer
        self.ui_run_url = ui_run_url
        self.interval = interval
        self.steps = [
            StepView(s.id, s.label, s.title, list(s.tasks or [s.id])) for s in definition.steps
        ]
        self._by_task = {t: v for v in self.steps for t in v.tasks}
        self.detail = ""
        self.run_state = ""
        self.run: FlowRun | None = None
        self.first_step_at: float | None = None
        self._told_pause: set[str] = set()
        self._printed: dict[str, str] = {}
        self._told_reports: set[str] = set()

    # ---------------------------------------------------------------- reading
    def refresh(self) -> FlowRun:
        run = self.client.read_flow_run(self.run_id)
        self.run = run
        self.run_state = run.state.name if run.state else "?"
        tasks: list[TaskRun] = self.client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[self.run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )
        for t in tasks:
            view = self._by_task.get(base_task_name(t))
            if view is not None and t.state is not None:
                view.states[base_task_name(t)] = t.state.name
        if self.first_step_at is None and any(v.states for v in self.steps):
            self.first_step_at = time.monotonic()
        logs = self.client.read_logs(
            log_filter=LogFilter(flow_run_id=_LogRunId(any_=[self.run_id])),
            limit=1,
            sort=LogSort.TIMESTAMP_DESC,
        )
        if logs:
            self.detail = logs[0].message.splitlines()[0][:200] if logs[0].message else ""
        return run

    def pause_request(self, run: FlowRun) -> PauseRequest | None:
        state = run.state
        if state is None or not state.is_paused():
            return None
        keyset = state.state_details.run_input_keyset
        if not keyset:
            return None
        # Prefect stores the form just after the run turns Paused, the schema first and the
        # description second; our flows always give one (flows/operator.ask). Until both
        # are stored there is no request, and the next poll asks again.
        schema = self._run_input(run.id, keyset.get("schema"))
        if not isinstance(schema, dict):
            return None
        description = self._run_input(run.id, keyset.get("description"))
        if not isinstance(description, str) or not description:
            return None
        key = state.state_details.pause_key or keyset["schema"]
        return PauseRequest(key, schema, description)

    def _run_input(self, run_id: UUID, key: str | None) -> Any:
        """A stored run input, JSON-decoded; None when absent (not stored yet) or unreadable."""
        if not key:
            return None
        try:
            return json.loads(self.client.read_flow_run_input(run_id, key))
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return None
            raise
        except (ObjectNotFound, ValueError):
            return None

    # ------------------------------------------------------------------ pause
    def tell_reports(self, key: str) -> None:
        """Print the reports folder once for this pause (nothing when there is none here)."""
        if self.reports_folder is None or key in self._told_reports:
            return
        self._told_reports.add(key)
        folder = self.reports_folder()
        if folder is not None:
            self.console.print(f"reports of this run: {folder}", soft_wrap=True)

    def handle_pause(self, run: FlowRun, suspend_display: Callable[[bool], None]) -> None:
        """Ask the operator once per pause. ``later`` leaves this pause to the UI (or to
        ``topup attach``) and keeps watching: the run's next pause is asked again."""
        request = self.pause_request(run)
        if request is None or request.key in self._told_pause:
            return
        if self.answer is None:
            self._told_pause.add(request.key)
            self.console.print(
                f"[yellow]the run waits for operator input ({escape(request.key)}); "
                f"{self._elsewhere()}[/]"
            )
            self.tell_reports(request.key)
            return
        suspend_display(True)
        self.tell_reports(request.key)
        try:
            while True:
                values = self.answer(request)
                if values is None:
                    self._told_pause.add(request.key)
                    # Printed while the live display is off: it stays above it.
                    self.console.print(
                        f"[yellow]left {escape(request.key)} for later; {self._elsewhere()}[/]"
                    )
                    return
                result = self.client.resume_flow_run(self.run_id, run_input=values)
                if result.status.value == "ACCEPT":
                    self.console.print(f"answered {escape(request.key)}: {escape(str(values))}")
                    return
                reason = getattr(result.details, "reason", None) or result.status.value
                self.console.print(f"[red]Prefect refused the answer: {escape(str(reason))}[/]")
                if self.client.read_flow_run(self.run_id).state.is_paused() is False:  # type: ignore[union-attr]
                    return
        finally:
            suspend_display(False)

    def _elsewhere(self) -> str:
        """Where else the operator can answer a pause."""
        name = self.run.name if self.run is not None else str(self.run_id)
        ui = f"in the Prefect UI ({self.ui_run_url})" if self.ui_run_url else "in the Prefect UI"
        return f"answer it {ui} or with `topup attach {name}`"

    # ---------------------------------------------------------------- watching
    def watch(self, timeout: float = 24 * 3600) -> FlowRun:
        if self.console.is_terminal:
            return self._watch_live(timeout)
        return self._watch_lines(timeout)

    def _loop(
        self, timeout: float, render: Callable[[], None], suspend: Callable[[bool], None]
    ) -> FlowRun:
        deadline = time.monotonic() + timeout
        while True:
            run = self.refresh()
            render()
            if run.state is not None and run.state.is_final():
                return run
            if run.state is not None and run.state.is_paused():
                self.handle_pause(run, suspend)
            if time.monotonic() > deadline:
                return run
            time.sleep(self.interval)

    def _watch_lines(self, timeout: float) -> FlowRun:
        def render() -> None:
            if self._printed.get("__run__") != self.run_state:
                self._printed["__run__"] = self.run_state
                self.console.print(f"run: {self.run_state}")
            for v in self.steps:
                status = f"{v.status} {v.done}/{len(v.tasks)}"
                if v.states and self._printed.get(v.id) != status:
                    self._printed[v.id] = status
                    self.console.print(f"step {v.label:<4} {v.id:<16} {status}")

        run = self._loop(timeout, render, lambda _: None)
        self.console.print(self.summary())
        return run

    def _watch_live(self, timeout: float) -> FlowRun:
        progress, ids = step_bars(self.steps, self.console)
        header = Text()
        footer = Text(overflow="ellipsis", no_wrap=True)
        display = Group(header, progress, footer)
        # Transient, and a new Live after each prompt: stopping erases the bars, so what was
        # printed meanwhile (the prompt, the answer, "left for later") stays on the screen
        # above the bars instead of being overwritten by their next refresh.
        live: list[Live] = []

        def render() -> None:
            header.plain = f"run {self.run.name if self.run else self.run_id}: {self.run_state}"
            for v in self.steps:
                progress.update(ids[v.id], completed=v.done, status=v.status)
            footer.plain = f"> {self.detail}"

        def suspend(on: bool) -> None:
            if on and live:
                live.pop().stop()
            elif not on and not live:
                live.append(self._new_live(display))

        live.append(self._new_live(display))
        try:
            run = self._loop(timeout, render, suspend)
        finally:
            while live:
                live.pop().stop()
        self.console.print(self.summary())
        return run

    def _new_live(self, display: Group) -> Live:
        live = Live(display, console=self.console, refresh_per_second=4, transient=True)
        live.start()
        return live

    def summary(self) -> Group:
        """What the operator needs at the end: the run, its outcome, where it stopped,
        each step's state, and what to do next."""
        return run_summary(self.run, self.run_id, self.steps, self.ui_run_url)


def step_bars(steps: list[StepView], console: Console) -> tuple[Progress, dict[str, TaskID]]:
    """A bar per step with its full title, wrapped in the width the other columns leave."""
    progress = Progress(
        TextColumn("{task.fields[label]}", table_column=Column(width=4, no_wrap=True)),
        TextColumn("{task.description}", table_column=TITLE_COLUMN.copy()),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}", table_column=Column(width=13, no_wrap=True)),
        console=console,
        expand=True,
    )
    ids = {
        v.id: progress.add_task(v.title, total=len(v.tasks), label=v.label, status="")
        for v in steps
    }
    return progress, ids


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _run_time(run: FlowRun | None) -> str:
    """How long the run has been going (pauses included), from Prefect's own times."""
    if run is None or run.start_time is None:
        return ""
    from datetime import datetime

    end = run.end_time or datetime.now(UTC)
    return f"started {run.start_time.astimezone():%Y-%m-%d %H:%M}, ran {_duration((end - run.start_time).total_seconds())}"


def run_summary(
    run: FlowRun | None,
    run_id: UUID,
    steps: list[StepView],
    ui_run_url: str | None,
) -> Group:
    """The end of `topup run` / `topup attach`: outcome, the step that stopped, each step's
    state (full titles, wrapped), and the commands that come next."""
    name = run.name if run is not None else str(run_id)
    state = run.state if run is not None else None
    params = run.parameters if run is not None else {}
    what = " ".join(str(params[k]) for k in ("round", "date") if params.get(k))
    lines: list[Any] = []
    # One line the operator (and scripts) read first: "flow run <name>: <state> - <why>".
    head = Text.assemble(
        "flow run ",
        (name, "bold"),
        ": ",
        (state.name if state else "?", _style(state.name if state else "")),
        f" - {state.message}" if state is not None and state.message else "",
    )
    lines.append(head)
    took = _run_time(run)
    if what or took:
        lines.append(Text("  " + ", ".join(x for x in (what, took) if x)))
    done = sum(1 for v in steps if v.status in FINISHED_OK)
    stopped = next((v for v in steps if v.status not in FINISHED_OK + ("Pending",)), None)
    lines.append(Text(f"  steps done: {done} of {len(steps)}"))
    if stopped is not None and (state is None or not state.is_completed()):
        lines.append(Text(f"  stopped at step {stopped.label} {stopped.title}: {stopped.status}"))
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
    table.add_column("step", no_wrap=True)
    table.add_column("title", overflow="fold")
    table.add_column("state", no_wrap=True)
    for v in steps:
        table.add_row(v.label, v.title, Text(v.status, style=_style(v.status)))
    lines.append(table)
    if ui_run_url:
        lines.append(Text(f"  Prefect UI: {ui_run_url}"))
    nxt = [f"topup logs {name}"]
    if state is not None and state.is_paused():
        nxt.insert(0, f"topup attach {name}")
    elif state is not None and (state.is_failed() or state.is_crashed()):
        nxt.insert(0, f"topup retry {name}")
    elif state is not None and not state.is_final():
        nxt.insert(0, f"topup attach {name}")
    lines.append(Text("  next: " + " | ".join(nxt)))
    return Group(*lines)


def _style(state_name: str) -> str:
    if state_name in FINISHED_OK:
        return "green"
    if state_name in ("Failed", "Crashed", "Cancelled", "TimedOut"):
        return "red"
    if state_name in ("Paused", "Suspended", "AwaitingRetry", "Retrying"):
        return "yellow"
    return ""


def prompt_answer(console: Console) -> Answerer:
    """Ask the operator on the terminal, field by field, following the RunInput's schema."""
    from rich.prompt import Prompt

    def answer(request: PauseRequest) -> dict[str, Any] | None:
        console.rule(f"[bold]the run waits for you: {escape(request.key)}")
        # The approval texts are Markdown (tables, lists, code): rendered, not raw.
        console.print(Markdown(request.description))
        props: dict[str, Any] = request.schema.get("properties", {})
        required = set(request.schema.get("required", []))
        values: dict[str, Any] = {}
        for name, spec in props.items():
            if name == "description":
                continue
            choices = spec.get("enum")
            text = escape(spec.get("description") or name)
            if choices:
                picked = Prompt.ask(
                    f"{name} ({text})", choices=[*choices, "later"], console=console
                )
                if picked == "later":
                    return None
                values[name] = picked
            else:
                default = spec.get("default", "")
                if name == "name" and not default:
                    default = getpass.getuser()
                while True:
                    given = Prompt.ask(f"{name} ({text})", default=str(default), console=console)
                    if given or name not in required:
                        break
                if spec.get("type") == "integer" and given.strip().lstrip("-").isdigit():
                    values[name] = int(given)
                else:
                    values[name] = given
        return values

    return answer
