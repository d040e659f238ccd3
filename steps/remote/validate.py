"""Validation and quoting of every value that reaches a remote shell.

Nothing is interpolated into a command without passing through one of these
functions: a value is first checked against its pattern, then shell-quoted.
"""

from __future__ import annotations

import re
import shlex

DATE_RE = re.compile(r"^\d{6}$")
ROUND_RE = re.compile(r"^round\d+$")
RUN_RE = re.compile(r"^\d{1,9}$")
JOB_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
BOSS_RE = re.compile(r"^\d+\.\d+\.\d+$")
NAME_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]-]{1,200}$")


class InvalidValue(ValueError):
    """A value that must not reach a remote shell."""

    def __init__(self, kind: str, value: object) -> None:
        super().__init__(f"invalid {kind}: {value!r}")
        self.kind = kind
        self.value = value


def _check(kind: str, pattern: re.Pattern[str], value: object) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidValue(kind, value)
    return value


def date(value: object) -> str:
    """A data-taking day, ``yymmdd``."""
    return _check("date", DATE_RE, value)


def round_(value: object) -> str:
    """A round, ``round18``."""
    return _check("round", ROUND_RE, value)


def run(value: object) -> str:
    """A run number as digits (ints are accepted and converted)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    return _check("run", RUN_RE, value)


def job_key(value: object) -> str:
    """A caller-chosen id for a detached command or a control directory."""
    return _check("job key", JOB_KEY_RE, value)


def boss_version(value: object) -> str:
    return _check("BOSS version", BOSS_RE, value)


def file_name(value: object) -> str:
    """A single path component (globs allowed), never a path or a '..'."""
    v = _check("file name", NAME_RE, value)
    if v in {".", ".."}:
        raise InvalidValue("file name", value)
    return v


def path(value: object) -> str:
    """An absolute or home-relative remote path without shell metacharacters.

    Paths come from settings, not from users, but are still checked: no NUL, no
    newline, no '..' component, absolute or starting with '~/'.
    """
    if not isinstance(value, str) or not value or "\x00" in value or "\n" in value:
        raise InvalidValue("path", value)
    if not (value.startswith("/") or value.startswith("~/") or value == "~"):
        raise InvalidValue("path", value)
    if any(part == ".." for part in value.split("/")):
        raise InvalidValue("path", value)
    return value


def q(value: str) -> str:
    """Shell-quote one word."""
    return shlex.quote(value)


def qpath(value: str) -> str:
    """Quote a validated path; a leading ``~/`` stays expandable as ``"$HOME"/...``."""
    value = path(value)
    if value == "~":
        return '"$HOME"'
    if value.startswith("~/"):
        rest = value[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(value)
