"""Step 8: submit the constants to the offline calibration database (8.1 – 8.3).

Each part is run in two halves, each its own task, with an operator in between:
- ``prepare_part``: the part's sub-steps up to and including the dry run
  (``genInsertCmd.sh ... -sub_switch 0``), whose output is returned for review;
- ``submit_part``: the real, irreversible submission (``-sub_switch 1``; for 8.3 then
  ``reset_root.sh``), refused without ``approved_by`` and without a successful dry run of the
  same range in the same flow run.
The legacy script runs both at once with no human in between (spec steps-7-8.md §2.9).

The rest of step 8, by what it does:
- ``steps.step8_range``: the run range, the first token of the first and last lines of
  ``INJ/interval.txt`` (the ``step8_range`` task), and the checks of the range parameters;
- ``steps.step8_parts``: the sub-steps of 8.1, 8.2 and 8.3 (remote commands, as data);
- ``steps.step8_substeps``: running them so that a finished one never runs again;
- ``steps.step8_exclusion``: setting aside the runs of a failed date.
The flow side (dates of the range, approvals, the ledger) is ``flows/submission.py``.
"""

from __future__ import annotations

from typing import Any

from steps.declare import declare
from steps.remote import validate
from steps.remote.site import RemoteSite
from steps.results import StepResult
from steps.step8_parts import PARTS, part_prefix
from steps.step8_range import APPROVAL_CODE, database_range, range_args
from steps.step8_substeps import attempts, known_commands, run_substeps, summary
from steps.step_log import fail

NO_DRY_RUN_CODE = 70  # submit without a successful dry run of this range


def prepare_part(
    site: RemoteSite,
    part: str,
    *,
    round: str,
    run_key: str,
    run_from: int | str | None,
    run_to: int | str | None,
    max_wait_minutes: float = 30,
    poll_seconds: float = 5,
) -> StepResult:
    """Run a part's sub-steps up to and including the dry run; return the dry-run output."""
    name, prepare, _ = PARTS[part]
    validate.job_key(run_key)
    f, t = range_args(part, round, run_from, run_to)
    fields: dict[str, Any] = {"round": round}
    done = run_substeps(
        site,
        part,
        prepare,
        run_key=run_key,
        run_from=f,
        run_to=t,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        fields=fields,
    )
    dry = done[-1].detached
    return StepResult(
        step=part,
        message=f"{name}: prepared runs {f}–{t}; dry run (-sub_switch 0) output ready for review",
        data={
            "phase": "prepare",
            "part": part,
            "run_from": f,
            "run_to": t,
            "dry_run_output": dry.stdout or "",
            "substeps": summary(done),
        },
        **fields,
    )


def submit_part(
    site: RemoteSite,
    part: str,
    *,
    round: str,
    run_key: str,
    run_from: int | str | None,
    run_to: int | str | None,
    approved_by: str,
    max_wait_minutes: float = 30,
    poll_seconds: float = 5,
    resubmit_after: str | None = None,
) -> StepResult:
    """The real submission (``-sub_switch 1``, for 8.3 then ``reset_root.sh``), once.

    Refused (manual) without ``approved_by`` or without a successful dry run of the same
    range in this flow run. A retry returns the recorded result of a finished submission.
    """
    name, prepare, submit = PARTS[part]
    who = (approved_by or "").strip()
    if not who:
        fail(
            part,
            APPROVAL_CODE,
            f"{name}: the database submission is irreversible and needs an operator's "
            "approval (approved_by is empty)",
            round=round if isinstance(round, str) else None,
        )
    validate.job_key(run_key)
    f, t = range_args(part, round, run_from, run_to)
    fields: dict[str, Any] = {"round": round}
    prefix = part_prefix(run_key, part, f, t)
    dry = prepare[-1]
    dry_base = f"{prefix}.{dry.purpose}"
    dry_attempts = attempts(dry_base, known_commands(site, prefix))
    if not dry_attempts or not dry_attempts[-1][1].ok:
        fail(
            part,
            NO_DRY_RUN_CODE,
            f"{name}: no successful dry run (-sub_switch 0) of runs {f}–{t} in this flow run; "
            "run the prepare step first",
            data={"approved_by": who},
            **fields,
        )
    done = run_substeps(
        site,
        part,
        submit,
        run_key=run_key,
        run_from=f,
        run_to=t,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        fields=fields,
        resubmit_after=resubmit_after,
    )
    sub = next(d for d in done if d.sub.submission)
    return StepResult(
        step=part,
        message=(
            f"{name}: runs {f}–{t} "
            + (
                "were already submitted in this flow run (recorded result)"
                if sub.reused
                else "submitted to the database"
            )
            + f"; approved by {who}"
        ),
        data={
            "phase": "submit",
            "part": part,
            "run_from": f,
            "run_to": t,
            "approved_by": who,
            "already_submitted": sub.reused,
            "submit_output": sub.detached.stdout or "",
            "substeps": summary(done),
        },
        **fields,
    )


# The plain functions behind the step-8 tasks. Each dates its result with the flow's ``date``
# (the range and the parts are the round's, not a date's). One small function per part and
# phase, not one with ``part`` bound: Prefect's default cache key hashes the declared
# function's source (steps/declare.py), so parts sharing one function would share cached
# results. Their task parameters are the ``*_inputs`` signatures below. ``run_from``/``run_to``
# come from ``step8_range`` (read once, before 8.1.1 rewrites interval.txt); missing → 21.


def _dated(result: StepResult, date: str | None) -> StepResult:
    result.date = date
    return result


def _prepare_inputs(
    site: RemoteSite,
    date: str | None,
    round: str,
    run_key: str,
    run_from: int | None = None,
    run_to: int | None = None,
    max_wait_minutes: float = 30,
    poll_seconds: float = 5,
) -> StepResult:
    """The parameters of the three ``prepare`` tasks (a signature only, never called)."""
    raise NotImplementedError


def _submit_inputs(
    site: RemoteSite,
    date: str | None,
    round: str,
    run_key: str,
    run_from: int | None = None,
    run_to: int | None = None,
    approved_by: str = "",
    max_wait_minutes: float = 30,
    poll_seconds: float = 5,
    resubmit_after: str | None = None,
) -> StepResult:
    """The parameters of the three ``submit`` tasks (a signature only, never called)."""
    raise NotImplementedError


def range_of_round(site: RemoteSite, date: str | None, round: str, run_key: str) -> StepResult:
    """The round's run range (``date`` only dates the result)."""
    return _dated(database_range(site, round=round, run_key=run_key), date)


def prepare_8_1(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.1 (InjSigInterval) up to and including its dry run."""
    return _dated(prepare_part(site, "8.1", **inputs), date)


def submit_8_1(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.1 (InjSigInterval): the real, irreversible submission."""
    return _dated(submit_part(site, "8.1", **inputs), date)


def prepare_8_2(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.2 (InjSigTime) up to and including its dry run."""
    return _dated(prepare_part(site, "8.2", **inputs), date)


def submit_8_2(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.2 (InjSigTime): the real, irreversible submission."""
    return _dated(submit_part(site, "8.2", **inputs), date)


def prepare_8_3(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.3 (OfflineEvtFilter) up to and including its dry run."""
    return _dated(prepare_part(site, "8.3", **inputs), date)


def submit_8_3(site: RemoteSite, date: str | None, **inputs: Any) -> StepResult:
    """8.3 (OfflineEvtFilter, then reset_root.sh): the real, irreversible submission."""
    return _dated(submit_part(site, "8.3", **inputs), date)


step8_range = declare("step8_range", "8", "Read the round's run range", range_of_round)
step8_1_prepare = declare(
    "step8_1_prepare", "8.1", "InjSigInterval: dry run", prepare_8_1, inputs=_prepare_inputs
)
step8_1_submit = declare(
    "step8_1_submit", "8.1", "InjSigInterval: submission", submit_8_1, inputs=_submit_inputs
)
step8_2_prepare = declare(
    "step8_2_prepare", "8.2", "InjSigTime: dry run", prepare_8_2, inputs=_prepare_inputs
)
step8_2_submit = declare(
    "step8_2_submit", "8.2", "InjSigTime: submission", submit_8_2, inputs=_submit_inputs
)
step8_3_prepare = declare(
    "step8_3_prepare", "8.3", "OfflineEvtFilter: dry run", prepare_8_3, inputs=_prepare_inputs
)
step8_3_submit = declare(
    "step8_3_submit", "8.3", "OfflineEvtFilter: submission", submit_8_3, inputs=_submit_inputs
)
