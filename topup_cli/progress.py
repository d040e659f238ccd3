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
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter
from prefect.client.schemas.filters import LogFilterFlowRunId as _LogRunId
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.client.schemas.sorting import LogSort, TaskRunSort
from prefect.exceptions import ObjectNotFound
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from flows.definitions import WorkflowDefinition
from flows.naming import task_of

FINISHED_OK = ("Completed", "Cached")


@dataclass
class PauseRequest:
    """What a paused run waits for: the RunInput's JSON schema and the description."""

    key: str
    schema: dict[str, Any]
    description: str | None


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
        self.first_step_at: float | None = None
        self._told_pause: set[str] = set()
        self._printed: dict[str, str] = {}
        self._told_reports: set[str] = set()

    # ---------------------------------------------------------------- reading
    def refresh(self) -> FlowRun:
        run = self.client.read_flow_run(self.run_id)
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
        try:
            schema = json.loads(self.client.read_flow_run_input(run.id, keyset["schema"]))
        except (ObjectNotFound, ValueError, KeyError):
            return None
        try:
            description = json.loads(self.client.read_flow_run_input(run.id, keyset["description"]))
        except (ObjectNotFound, ValueError, KeyError):
            description = None
        key = state.state_details.pause_key or keyset["schema"]
        return PauseRequest(key, schema, description if isinstance(description, str) else None)

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
        request = self.pause_request(run)
        if request is None:
            return
        if self.answer is None:
            if request.key not in self._told_pause:
                self._told_pause.add(request.key)
                where = f": {self.ui_run_url}" if self.ui_run_url else ""
                self.console.print(
                    f"[yellow]the run waits for operator input ({request.key}); "
                    f"answer it in the Prefect UI{where}[/]"
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
                    self.answer = None
                    self.console.print("left unanswered; answer it in the Prefect UI")
                    return
                result = self.client.resume_flow_run(self.run_id, run_input=values)
                if result.status.value == "ACCEPT":
                    self.console.print(f"answered {request.key}: {values}")
                    return
                reason = getattr(result.details, "reason", None) or result.status.value
                self.console.print(f"[red]Prefect refused the answer: {reason}[/]")
                if self.client.read_flow_run(self.run_id).state.is_paused() is False:  # type: ignore[union-attr]
                    return
        finally:
            suspend_display(False)

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
        progress = Progress(
            TextColumn("{task.fields[label]:<4}"),
            TextColumn("{task.description:<40}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        ids: dict[str, TaskID] = {
            v.id: progress.add_task(v.title[:40], total=len(v.tasks), label=v.label, status="")
            for v in self.steps
        }
        header = Text()
        footer = Text()
        live = Live(Group(header, progress, footer), console=self.console, refresh_per_second=4)

        def render() -> None:
            header.plain = f"run {self.run_id}: {self.run_state}"
            for v in self.steps:
                progress.update(ids[v.id], completed=v.done, status=v.status)
            footer.plain = f"> {self.detail}"

        def suspend(on: bool) -> None:
            if on:
                live.stop()
            else:
                live.start()

        live.start()
        try:
            run = self._loop(timeout, render, suspend)
        finally:
            live.stop()
        self.console.print(self.summary())
        return run

    def summary(self) -> Table:
        table = Table(title=f"flow run {self.run_id}: {self.run_state}")
        for col in ("step", "id", "title", "tasks", "state"):
            table.add_column(col)
        for v in self.steps:
            table.add_row(v.label, v.id, v.title, f"{v.done}/{len(v.tasks)}", v.status)
        return table


def prompt_answer(console: Console) -> Answerer:
    """Ask the operator on the terminal, field by field, following the RunInput's schema."""
    from rich.prompt import Prompt

    def answer(request: PauseRequest) -> dict[str, Any] | None:
        console.rule(f"[bold]the run waits for you: {request.key}")
        if request.description:
            console.print(request.description)
        props: dict[str, Any] = request.schema.get("properties", {})
        required = set(request.schema.get("required", []))
        values: dict[str, Any] = {}
        for name, spec in props.items():
            if name == "description":
                continue
            choices = spec.get("enum")
            text = spec.get("description") or name
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
