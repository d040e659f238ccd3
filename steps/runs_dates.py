"""A date's runs: the "validate first" rule and the one listing of ``DATA/{date}``.

Why its own module: every step starts from the same question (which runs belong to this
date?) and answers it the same way, with the same codes when it cannot.

- ``date_runs(site, round, date) -> list[int]`` — validates, ONE ``ls`` of ``DATA/{date}``,
  returns the sorted run numbers of its raw files; raises ``DateUnavailable`` when the
  directory is missing or holds no raw file.
- ``check_inputs(step, site, round, date, run_key=None) -> list[int]`` — the "validate first"
  rule as one call: like ``date_runs`` but failures raise ``StepError`` (22 bad date, 20 bad
  round or run key, 70 date without raw data; all ``manual``).
- ``parse_runs(names, pattern) -> list[int]`` — run numbers from names via a regex group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from steps.remote import validate
from steps.remote.validate import InvalidValue, qpath
from steps.step_log import fail

if TYPE_CHECKING:
    from steps.remote.site import RemoteSite

__all__ = ["DateUnavailable", "check_inputs", "date_runs", "parse_runs"]

RAW_RUN_RE = re.compile(r"^run_(\d+)_.*\.raw$")

# Code used when a date exists nowhere in DATA or has no raw files: a validation rule failed
# and only a person can fix it (choose another date, wait for the data).
NO_DATA_CODE = 70
INVALID_DATE_CODE = 22
INVALID_PARAMETER_CODE = 20


class DateUnavailable(Exception):
    """``DATA/{date}`` is missing, unreadable or holds no raw file."""

    def __init__(self, date: str, round: str, reason: str) -> None:
        super().__init__(f"date {date} of {round}: {reason}")
        self.date = date
        self.round = round
        self.reason = reason


def parse_runs(names: Iterable[str], pattern: re.Pattern[str] | str) -> list[int]:
    """Sorted unique run numbers from the first group of ``pattern`` matched on each name."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    runs: set[int] = set()
    for name in names:
        m = rx.match(name.strip())
        if m:
            runs.add(int(m.group(1)))
    return sorted(runs)


def date_runs(site: RemoteSite, round: str, date: str) -> list[int]:
    """Run numbers of the raw files in ``DATA/{date}`` (one remote ``ls``).

    The run is read from the raw file name ``run_00{run}_...raw`` as a number, so a 6-digit
    run does not break it (the legacy scripts cut 5 characters).
    """
    validate.date(date)
    validate.round_(round)
    directory = f"{site.paths(round).data}/{date}"
    cmd = f"test -d {qpath(directory)} || exit 3; ls -1 {qpath(directory)}"
    res = site.run(cmd)
    if res.exit_code == 3:
        raise DateUnavailable(date, round, f"no directory {date} in DATA")
    if not res.ok:
        raise DateUnavailable(date, round, f"cannot list DATA/{date}: {res.stderr.strip()[:200]}")
    runs = parse_runs(res.stdout.splitlines(), RAW_RUN_RE)
    if not runs:
        raise DateUnavailable(date, round, f"no raw files in DATA/{date}")
    return runs


def check_inputs(
    step: str, site: RemoteSite, round: str, date: str, run_key: str | None = None
) -> list[int]:
    """Validate date, round (and run_key) and return the date's runs, or fail with a code."""
    base: dict[str, Any] = {"date": date if isinstance(date, str) else None}
    try:
        validate.date(date)
    except InvalidValue as exc:
        fail(step, INVALID_DATE_CODE, str(exc), **base)
    base["round"] = round if isinstance(round, str) else None
    try:
        validate.round_(round)
        if run_key is not None:
            validate.job_key(run_key)
    except InvalidValue as exc:
        fail(step, INVALID_PARAMETER_CODE, str(exc), **base)
    try:
        return date_runs(site, round, date)
    except DateUnavailable as exc:
        fail(step, NO_DATA_CODE, str(exc), **base)
