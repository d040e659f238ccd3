"""Replay a recorded transcript (``topup transcript --json``) against the simulated site.

Why: the first run on the real site records every command and its answer; replaying it
here says, command by command, where the simulation answers differently. The answers
compared are the ones a transcript keeps:

- every command that changes or reads the tree directly (``run`` and ``script`` records):
  its exit status;
- a detached command (``detached-start``): the exit status it finally ended with (the last
  status the recorded run saw for its key);
- a poll of expected files (``poll``): which expected files were found, at the last poll of
  each directory in each step (earlier polls saw jobs still running and are not compared).

Status checks of detached commands and downloads are observations of timing, not answers:
they are skipped. Before every compared command the replay lets the site settle (the
detached command it started has ended, no batch job is queued or running), so it compares
final states. Recorded base paths are mapped onto the simulation's (longest first).
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from steps.config import SiteSettings
from steps.remote.errors import RemoteError
from steps.remote.site import RemoteSite
from steps.remote.transcript import ExportedCommand, TranscriptExport

PATH_SETTINGS = (
    "topup_root",
    "data_root",
    "env_script",
    "container_cmd",
    "calib_const_root",
    "check_db_alg_dir",
    "control_dir",
)


class Difference(BaseModel):
    index: int  # position in the transcript
    step: str
    kind: str
    command: str  # what / first line of the text
    field: str  # "exit status", "detached exit status", "files found"
    recorded: Any
    replayed: Any


class ReplayReport(BaseModel):
    flow_run_id: str
    commands: int
    compared: int = 0
    skipped: int = 0
    differences: list[Difference] = Field(default_factory=list)


class PathMap:
    """Recorded base paths -> the simulation's, applied longest first."""

    def __init__(self, recorded: dict[str, str], sim: SiteSettings) -> None:
        pairs = [(recorded[k], str(getattr(sim, k))) for k in PATH_SETTINGS if recorded.get(k)]
        self.pairs = sorted({p for p in pairs if p[0] != p[1]}, key=lambda p: -len(p[0]))

    def __call__(self, text: str) -> str:
        if not self.pairs:
            return text
        # Two passes through placeholders, so a sim path containing a recorded one is safe.
        for i, (old, _) in enumerate(self.pairs):
            text = text.replace(old, f"\0{i}\0")
        for i, (_, new) in enumerate(self.pairs):
            text = text.replace(f"\0{i}\0", new)
        return text


def _label(c: ExportedCommand) -> str:
    return (c.what or c.text.split("\n", 1)[0])[:160]


def _last_indexes(commands: list[ExportedCommand]) -> tuple[dict[str, Any], set[int]]:
    """The last recorded status per detached key, and the index of the last poll per
    (step, directory)."""
    final: dict[str, Any] = {}
    last_poll: dict[tuple[str, str], int] = {}
    for i, c in enumerate(commands):
        key = c.answer.get("key") if c.kind == "detached-start" else None
        if c.kind == "detached-status" or key:
            name = c.answer.get("key") or c.what.removeprefix("status detached ").strip()
            if c.answer.get("state") in ("exited", "running"):
                final[name] = c.answer
        if c.kind == "poll" and "directory" in c.answer:
            last_poll[(c.step, c.answer["directory"])] = i
    return final, set(last_poll.values())


def _found_now(directory: str, answer: dict[str, Any]) -> list[str]:
    """Which of the poll's expected names exist (non-empty) in the sim's directory now."""
    found = []
    for entry in list(answer.get("found", [])) + list(answer.get("missing", [])):
        run, _, name = entry.partition(":")
        matches = glob.glob(os.path.join(directory, name))
        if any(os.path.isfile(m) and os.path.getsize(m) > 0 for m in matches):
            found.append(entry)
    return sorted(found)


def replay(
    recorded: TranscriptExport,
    site: RemoteSite,
    settle: Callable[[], None],
    detached_timeout: float = 300.0,
) -> ReplayReport:
    """Run ``recorded``'s commands on ``site`` in order; report what answers differently.

    ``settle`` waits until the site's batch jobs are done (``SimSite.wait_jobs``).
    """
    commands = recorded.commands
    mapped = PathMap(recorded.paths, site.settings)
    final, compared_polls = _last_indexes(commands)
    report = ReplayReport(flow_run_id=recorded.flow_run_id, commands=len(commands))

    def differ(i: int, c: ExportedCommand, field: str, was: Any, now: Any) -> None:
        if was != now:
            report.differences.append(
                Difference(
                    index=i,
                    step=c.step,
                    kind=c.kind,
                    command=mapped(_label(c)),
                    field=field,
                    recorded=was,
                    replayed=now,
                )
            )

    for i, c in enumerate(commands):
        if c.kind in ("detached-status", "download") or (
            c.kind == "poll" and i not in compared_polls
        ):
            report.skipped += 1
            continue
        settle()
        report.compared += 1
        if c.kind == "detached-start":
            a = c.answer
            key = a.get("key", "")
            if not key or "command" not in a:
                report.skipped += 1
                report.compared -= 1
                continue
            site.start_detached(
                key,
                mapped(a["command"]),
                mapped(a.get("cwd") or "~"),
                env=bool(a.get("env", True)),
                round=a.get("round"),
            )
            try:
                done = site.wait_detached(key, timeout=detached_timeout, poll=0.1)
                now: Any = done.exit_code if done.state == "exited" else done.state
            except RemoteError as exc:
                now = f"{type(exc).__name__}"
            was = final.get(key, a)
            differ(i, c, "detached exit status", was.get("exit_code"), now)
            continue
        if c.kind == "poll":
            directory = mapped(c.answer["directory"])
            differ(
                i,
                c,
                "files found",
                sorted(c.answer.get("found", [])),
                _found_now(os.path.expanduser(directory), c.answer),
            )
            continue
        try:
            res = site.run(mapped(c.text), timeout=max(60.0, c.duration * 3 + 30))
            now = res.exit_code
        except RemoteError as exc:
            now = f"{type(exc).__name__}"
        was = c.exit_code if c.exit_code is not None else (c.error.split(":", 1)[0] or None)
        differ(i, c, "exit status", was, now)
    settle()
    return report


def wait_settled(site: Any, timeout: float = 120.0) -> Callable[[], None]:
    """``settle`` for a SimSite: no batch job idle or running (then a short breath for the
    jobs' last writes is not needed: a job is only done once its outputs are written)."""

    def settle() -> None:
        deadline = time.monotonic() + timeout
        if not site.wait_jobs(timeout=max(deadline - time.monotonic(), 0.0)):
            raise TimeoutError(f"sim jobs still running after {timeout:.0f}s")

    return settle
