"""Step 0: which data-taking dates exist in DATA and which are already processed in INJ.

Bookkeeping only: one remote command lists both directories, so the answer is consistent and
costs one round trip. "Processed" keeps the legacy meaning: a directory ``INJ/{date}`` exists
(spec steps-0-2.md §7). Failure to list DATA is an error (1103, retry); failure to list INJ
still answers with the dates and outcome WARNING (code 1102), as the legacy step did.
``dates_without_data`` flags date directories without raw files (every later step refuses
them with code 70), so a caller can skip them.
"""

from __future__ import annotations

import re
from typing import Literal

from steps import errors
from steps.declare import declare
from steps.remote import validate
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue, qpath
from steps.results import Outcome, StepResult
from steps.session import load_settings
from steps.step_log import fail, step_logger

STEP = "0"
DATE_LINE_RE = re.compile(r"^\d{6}$")
_INJ_MARK = "::topup-inj::"
_EMPTY_MARK = "::topup-empty::"
_RC_RE = re.compile(r"^::topup-rc:: (\d+) (\d+)$")

SortOrder = Literal["asc", "desc"]


def _dates(lines: list[str]) -> list[str]:
    return sorted({s for s in (line.strip() for line in lines) if DATE_LINE_RE.match(s)})


def available_dates(
    site: RemoteSite,
    round: str,
    include_processed: bool = True,
    sort_order: str = "asc",
) -> StepResult:
    """List the dates of a round: all, processed, unprocessed (sorted as asked)."""
    try:
        validate.round_(round)
    except InvalidValue as exc:
        fail(STEP, 20, str(exc))
    if sort_order not in ("asc", "desc"):
        fail(STEP, 20, f"sort_order must be 'asc' or 'desc', got {sort_order!r}", round=round)
    paths = site.paths(round)
    inj_part = f"ls -1 -- {qpath(paths.inj)}; rc_inj=$?" if include_processed else "rc_inj=0"
    # dates whose directory holds no raw file (steps 1-8 refuse them): same command
    empty_part = (
        f"for d in {qpath(paths.data)}/[0-9][0-9][0-9][0-9][0-9][0-9]; do "
        '[ -d "$d" ] || continue; set -- "$d"/*.raw; [ -e "$1" ] || echo "${d##*/}"; done'
    )
    cmd = (
        f"ls -1 -- {qpath(paths.data)}; rc_data=$?; echo {_EMPTY_MARK}; {empty_part}; "
        f'echo {_INJ_MARK}; {inj_part}; echo "::topup-rc:: $rc_data $rc_inj"'
    )
    res = site.run(cmd)
    lines = res.stdout.splitlines()
    rc_data = rc_inj = None
    for line in reversed(lines):
        m = _RC_RE.match(line.strip())
        if m:
            rc_data, rc_inj = int(m.group(1)), int(m.group(2))
            break
    if rc_data is None or _INJ_MARK not in lines or _EMPTY_MARK not in lines:
        fail(STEP, 1103, f"listing DATA and INJ failed: {res.stderr.strip()[:300]}", round=round)
    split_empty = lines.index(_EMPTY_MARK)
    split = lines.index(_INJ_MARK)
    if rc_data != 0:
        fail(
            STEP,
            1103,
            f"cannot list DATA of {round}: {res.stderr.strip()[:300]}",
            round=round,
        )
    reverse = sort_order == "desc"
    all_dates = sorted(_dates(lines[:split_empty]), reverse=reverse)
    without_data = sorted(_dates(lines[split_empty + 1 : split]), reverse=reverse)
    data: dict[str, object] = {
        "all_dates": all_dates,
        "total_count": len(all_dates),
        "sort_order": sort_order,
        "counts": {"total": len(all_dates)},
        # in DATA but without any raw file: listed (legacy), but no step accepts them
        "dates_without_data": without_data,
    }
    if not include_processed:
        return StepResult(
            step=STEP,
            round=round,
            message=f"{len(all_dates)} dates in DATA of {round}",
            data=data,
        )
    if rc_inj != 0:
        step_logger().warning("cannot list INJ of %s: processed dates unknown", round)
        data["warning"] = "processed dates unavailable (listing INJ failed)"
        return StepResult(
            step=STEP,
            round=round,
            outcome=Outcome.WARNING,
            error=errors.error(1102),
            message=f"{len(all_dates)} dates in DATA of {round}; processed dates unavailable",
            data=data,
        )
    processed = set(_dates(lines[split + 1 :]))
    processed_dates = sorted(processed, reverse=reverse)
    unprocessed = [d for d in all_dates if d not in processed]
    data.update(
        processed_dates=processed_dates,
        unprocessed_dates=unprocessed,
        processed_count=len(processed_dates),
        unprocessed_count=len(unprocessed),
        counts={
            "total": len(all_dates),
            "processed": len(processed_dates),
            "unprocessed": len(unprocessed),
        },
    )
    return StepResult(
        step=STEP,
        round=round,
        message=(
            f"{len(all_dates)} dates, {len(processed_dates)} processed, "
            f"{len(unprocessed)} unprocessed: {unprocessed}"
        ),
        data=data,
    )


def dates_step(
    site: RemoteSite,
    round: str,
    date: str | None = None,
    run_key: str | None = None,
    include_processed: bool = True,
    sort_order: SortOrder = "asc",
) -> StepResult:
    """Step 0 as the procedure calls it (``date``/``run_key`` accepted for a uniform call,
    unused)."""
    return available_dates(site, round, include_processed=include_processed, sort_order=sort_order)


def noop(round: str, run_key: str | None = None, site: str = "default") -> StepResult:
    """The legacy dates workflow's placeholder step: a resume can move past step 0 to it.

    Nothing reaches a remote shell, but its inputs are checked like every step's (the site
    must be a known one), so a bad value fails here as it would anywhere else.
    """
    try:
        validate.round_(round)
        if run_key is not None:
            validate.job_key(run_key)
    except InvalidValue as exc:
        fail("1", 20, str(exc))
    load_settings(site)
    return StepResult(step="1", round=round, message="nothing to do")


# --------------------------------------------------------------------------- tasks

step0 = declare("step0", "0", "List the dates in DATA not yet processed in INJ", dates_step)
step1_noop = declare(
    "step1_noop",
    "1",
    "Placeholder (nothing to do) so that a resume can move past step 0",
    noop,
    opens_site=False,
)
