"""Step 8's run range: which runs a submission carries, read once from ``INJ/interval.txt``.

The legacy range (spec steps-7-8.md §2) is the first token of the first and of the last line
of ``interval.txt``. It is read once, by the ``step8_range`` task, before 8.1.1 rewrites the
file; every part then gets it as ``run_from``/``run_to`` parameters, which are checked here
again (``range_args``) before anything remote runs.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from steps.remote import validate
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue, qpath
from steps.results import StepResult
from steps.step_log import fail

RUN_TOKEN_RE = re.compile(r"^\d{5,}$")

APPROVAL_CODE = 20  # INVALID_PARAMETER (manual): no approver / bad range parameter
INVALID_RANGE_CODE = 70  # DATA_VALIDATION_FAILED (manual): interval.txt gives no valid range
FILE_NOT_FOUND_CODE = 10
MISSING_CODE = 21  # MISSING_PARAMETER (manual): no run range given
FILE_READ_CODE = 11


def _range_fail(message: str, code: int, round: str, **data: Any) -> NoReturn:
    fail("8", code, message, round=round, data=data)


def _no_range(message: str, round: str, path: str, lines: list[str]) -> NoReturn:
    """The first or last line of interval.txt gives no valid run: the failure shows both."""
    first, last = lines[0], lines[-1]
    _range_fail(message, INVALID_RANGE_CODE, round, path=path, first_line=first, last_line=last)


def run_range(
    site: RemoteSite, round: str, runs_in_file: list[int] | None = None
) -> tuple[int, int]:
    """``(run_from, run_to)``: first token of the first and of the last line of interval.txt.

    ``runs_in_file``, when given, is filled with the run of every line (file order), so the
    caller can tell which dates the range carries.

    Missing file → 10, unreadable → 11 (retry); empty, malformed or reversed → 70 (manual).
    """
    validate.round_(round)
    if runs_in_file is None:
        runs_in_file = []
    path = f"{site.paths(round).inj}/interval.txt"
    res = site.run(f"test -f {qpath(path)} || exit 3; cat -- {qpath(path)}")
    if res.exit_code == 3:
        _range_fail(f"{path} does not exist", FILE_NOT_FOUND_CODE, round, path=path)
    if not res.ok:
        _range_fail(
            f"reading {path} failed (exit {res.exit_code}): {res.stderr.strip()[:200]}",
            FILE_READ_CODE,
            round,
            path=path,
        )
    lines = [ln for ln in res.stdout.strip().split("\n") if ln.strip()]
    if not lines:
        _range_fail(f"{path} is empty: no run range", INVALID_RANGE_CODE, round, path=path)
    first, last = lines[0].split()[0], lines[-1].split()[0]
    if not (RUN_TOKEN_RE.match(first) and RUN_TOKEN_RE.match(last)):
        message = f"run number format error in {path}: run_from={first!r}, run_to={last!r}"
        _no_range(message, round, path, lines)
    run_from, run_to = int(first), int(last)
    runs_in_file[:] = [int(t) for t in (ln.split()[0] for ln in lines) if RUN_TOKEN_RE.match(t)]
    if run_from > run_to:
        _no_range(f"{path}: first run {run_from} is after last run {run_to}", round, path, lines)
    return run_from, run_to


def database_range(site: RemoteSite, *, round: str, run_key: str) -> StepResult:
    """The ``step8_range`` result: the range every part submits, for the operator to see."""
    validate.job_key(run_key)
    runs: list[int] = []
    run_from, run_to = run_range(site, round, runs)
    return StepResult(
        step="8",
        message=f"runs {run_from}–{run_to} (first and last line of interval.txt)",
        round=round,
        data={"run_from": run_from, "run_to": run_to, "runs": runs},
    )


def range_args(part: str, round: str, run_from: Any, run_to: Any) -> tuple[int, int]:
    """Validate the range parameters (``^\\d{5,}$``, from ≤ to) before anything remote."""
    try:
        validate.round_(round)
    except InvalidValue as exc:
        fail(part, APPROVAL_CODE, str(exc))
    values = []
    for name, v in (("run_from", run_from), ("run_to", run_to)):
        if v is None:
            fail(part, MISSING_CODE, f"{name} is missing (take it from step8_range)", round=round)
        text = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(text, str) or not RUN_TOKEN_RE.match(text):
            fail(part, APPROVAL_CODE, f"invalid {name}: {v!r} (5 or more digits)", round=round)
        values.append(int(text))
    if values[0] > values[1]:
        fail(part, INVALID_RANGE_CODE, f"run_from {values[0]} > run_to {values[1]}", round=round)
    return values[0], values[1]
