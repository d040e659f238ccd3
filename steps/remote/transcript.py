"""An optional recorder of every remote command, for the per-run transcript.

Why a hook: the transcript lives in the outputs store and is keyed by the flow run, which
the remote layer must not know (it knows nothing of Prefect). ``RemoteSite`` describes each
command it sends in a ``CommandRecord`` and hands it to the installed recorder; ``flows/``
installs one that adds the flow run and step and writes the store. Off by default: with no
recorder, recording costs one ``None`` check per command.

Texts are masked (``mask``) before they leave: the passwords of the site's hops and anything
that looks like ``password=...`` never reach a record. Output itself is not kept, only its
size, plus a capped excerpt when the command failed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["run", "script", "detached-start", "detached-status", "poll", "download"]
TEXT_CHARS = 64 * 1024  # a poll script of hundreds of runs fits
EXCERPT_CHARS = 2000
MASK = "********"
_SECRET_RE = re.compile(
    r"(?i)((?:pass(?:word|wd)?|token|secret|api[_-]?key)\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)
_CD_RE = re.compile(r"^\s*cd\s+(?:--\s+)?('(?:[^']*)'|\"\$HOME\"(?:/\S*)?|[^\s;&|]+)\s*(&&|;)")


@dataclass
class CommandRecord:
    """One remote command (or download) and its answer.

    ``exit_code`` is None when no status came back (timeout, lost connection; ``error`` says
    which). ``answer`` holds what RemoteSite parsed from the output, when it parses it: the
    detached command's key, state and exit code, or the files a poll found.
    """

    kind: Kind
    text: str
    cwd: str
    started: float  # time.time()
    what: str = ""
    exit_code: int | None = None
    error: str = ""
    duration: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    excerpt: str = ""
    answer: dict[str, Any] = dc_field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error


Recorder = Callable[[CommandRecord], None]

_recorder: Recorder | None = None
_lock = threading.Lock()


def set_recorder(recorder: Recorder | None) -> Recorder | None:
    """Install ``recorder`` (None switches recording off); returns the previous one."""
    global _recorder
    with _lock:
        previous, _recorder = _recorder, recorder
    return previous


def active() -> bool:
    return _recorder is not None


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secret values nor ``password=...``-like assignments."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return _SECRET_RE.sub(lambda m: m.group(1) + MASK, text)


def leading_cwd(command: str, default: str = "~") -> str:
    """The directory a command first ``cd``s into (``cd X && ...``), else ``default``."""
    m = _CD_RE.match(command)
    if not m:
        return default
    word = m.group(1)
    if word.startswith("'") and word.endswith("'"):
        return word[1:-1]
    if word.startswith('"$HOME"'):
        return "~" + word[len('"$HOME"') :]
    return word


class _Pending:
    """A record being filled while its command runs."""

    def __init__(self, record: CommandRecord, secrets: tuple[str, ...]) -> None:
        self.record = record
        self.secrets = secrets

    def result(self, exit_code: int, stdout: str, stderr: str) -> None:
        r = self.record
        r.exit_code = exit_code
        r.stdout_bytes = len(stdout.encode())
        r.stderr_bytes = len(stderr.encode())
        if exit_code != 0:
            tail = (stderr.strip() + "\n" + stdout.strip()).strip()
            r.excerpt = mask(tail[-EXCERPT_CHARS:], self.secrets)

    def answer(self, **values: Any) -> None:
        self.record.answer.update(values)


@contextmanager
def recording(
    kind: Kind, text: str, cwd: str, what: str = "", secrets: tuple[str, ...] = ()
) -> Iterator[_Pending | None]:
    """Record the command run inside the block (yields None when nobody records).

    The record is handed over when the block ends, also when it raises (the error's type and
    message, masked, become ``error``).
    """
    recorder = _recorder
    if recorder is None:
        yield None
        return
    began = time.monotonic()
    record = CommandRecord(
        kind=kind,
        text=mask(text, secrets)[:TEXT_CHARS],
        cwd=cwd,
        started=time.time(),
        what=mask(what, secrets)[:200],
    )
    pending = _Pending(record, secrets)
    try:
        yield pending
    except BaseException as exc:
        record.error = mask(f"{type(exc).__name__}: {exc}", secrets)[:EXCERPT_CHARS]
        raise
    finally:
        record.duration = time.monotonic() - began
        try:
            recorder(record)
        except Exception:  # noqa: BLE001 - a broken recorder must not break the command
            import logging

            logging.getLogger("topup.remote").warning("transcript recorder failed", exc_info=True)


class ExportedCommand(BaseModel):
    """One command as ``topup transcript --json`` writes it (the store row's columns)."""

    model_config = ConfigDict(extra="ignore")

    step: str = ""
    kind: str
    what: str = ""
    text: str
    cwd: str = "~"
    exit_code: int | None = None
    error: str = ""
    duration: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    excerpt: str = ""
    answer: dict[str, Any] = Field(default_factory=dict)


class TranscriptExport(BaseModel):
    """A run's transcript as a file: what ``topup-sim replay`` reads."""

    flow_run_id: str
    site: str = ""
    login: str = ""
    paths: dict[str, str] = Field(default_factory=dict)  # setting -> remote base path
    commands: list[ExportedCommand] = Field(default_factory=list)
