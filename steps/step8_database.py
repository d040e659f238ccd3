"""Step 8: submit the constants to the offline calibration database (8.1 – 8.3).

Remote effects are the legacy ones (spec steps-7-8.md §2): the run range is the first token
of the first and last lines of ``INJ/interval.txt``; then three parts, every sub-step a
``cd <dir> && source ~/w720 && <action>``, each part ending with ``genInsertCmd.sh ...
-sub_switch 0`` (dry run) and ``-sub_switch 1`` (the real, irreversible submission).

Not reproduced (§2.9, §6): the real submission following the dry run at once with no human
in between (each part is split into ``prepare`` — up to and including the dry run, whose
output is returned for the operator — and ``submit``, which refuses to run without
``approved_by`` and without a successful dry run of the same range in the same flow run);
a re-run repeating finished sub-steps, in particular a finished ``-sub_switch 1`` (every
sub-step is a detached command keyed by flow run, part, range and sub-step: a finished one is
never started again, its recorded result is returned; a failed one gets a new attempt and the
result says so; one whose result was lost is left to a human); and failures reported as the
unknown code 103.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from steps.batch_jobs import detached_key
from steps.config import SitePaths
from steps.declare import declare
from steps.remote import validate
from steps.remote.site import Detached, RemoteSite
from steps.remote.validate import InvalidValue, q, qpath
from steps.results import StepResult
from steps.step_log import fail, step_logger

MIN = 60.0
RUN_TOKEN_RE = re.compile(r"^\d{5,}$")
CCOMPARE_ERROR_RE = re.compile(r"error:\s+(repeat|order|miss)", re.IGNORECASE)

SUBSTEP_CODE = 8100  # STEP8_DB_SUBMISSION_FAILED (retry): a failed preparing sub-step
SUBMISSION_CODE = 8101  # (manual): a failed -sub_switch 1; never started again by itself
APPROVAL_CODE = 20  # INVALID_PARAMETER (manual): no approver / bad range parameter
INVALID_RANGE_CODE = 70  # DATA_VALIDATION_FAILED (manual): interval.txt gives no valid range
NO_DRY_RUN_CODE = 70  # submit without a successful dry run of this range
LOST_CODE = 72  # DATA_INCONSISTENT (manual): a submission's result was lost
FILE_NOT_FOUND_CODE = 10
MISSING_CODE = 21  # MISSING_PARAMETER (manual): no run range given
FILE_READ_CODE = 11


# --------------------------------------------------------------------------- run range


def _range_fail(message: str, code: int, round: str, **data: Any) -> NoReturn:
    fail("8", code, message, round=round, data=data)


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
        _range_fail(
            f"run number format error in {path}: run_from={first!r}, run_to={last!r}",
            INVALID_RANGE_CODE,
            round,
            path=path,
            first_line=lines[0],
            last_line=lines[-1],
        )
    run_from, run_to = int(first), int(last)
    runs_in_file[:] = [int(t) for t in (ln.split()[0] for ln in lines) if RUN_TOKEN_RE.match(t)]
    if run_from > run_to:
        _range_fail(
            f"{path}: first run {run_from} is after last run {run_to}",
            INVALID_RANGE_CODE,
            round,
            path=path,
            first_line=lines[0],
            last_line=lines[-1],
        )
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


# --------------------------------------------------------------------------- sub-steps


Check = Callable[[str], str | None]


def ccompare_check(output: str) -> str | None:
    """8.3.3: the comparison reports repeated, out-of-order or missing runs."""
    m = CCOMPARE_ERROR_RE.search(output)
    return f"output contains {m.group(0)!r}" if m else None


def silent_check(output: str) -> str | None:
    """8.3.6: the checker prints nothing when the generated files are right."""
    text = output.strip()
    return f"unexpected output: {text[:300]!r}" if text else None


@dataclass(frozen=True)
class SubStep:
    """One remote action of a part; ``{F}``/``{T}``/``{B}`` = run_from, run_to, BOSS (720)."""

    id: str  # "8.1.2a"
    purpose: str  # key part, e.g. "s2a_compile"
    cwd: Callable[[SitePaths], str]
    command: str  # template, values are substituted already quoted
    what: str  # for messages
    check: Check | None = None
    submission: bool = False  # a -sub_switch 1: never repeated, a lost result is manual

    def render(self, run_from: int, run_to: int, bosse: str) -> str:
        return self.command.format(F=q(str(run_from)), T=q(str(run_to)), B=q(bosse))


def _insert(switch: int) -> str:
    return "bash genInsertCmd.sh -runfrom {F} -runto {T} -sub_switch " + str(switch)


PART_1_PREPARE = (
    SubStep("8.1.1", "s1_clean", lambda p: p.inj, "bash clean_interval.sh", "clean_interval.sh"),
    SubStep(
        "8.1.2a",
        "s2a_compile",
        lambda p: p.gen_const,
        "g++ -Wall genConst.cpp",
        "compiling genConst.cpp",
    ),
    SubStep("8.1.2b", "s2b_genconst", lambda p: p.gen_const, "./a.out {F}", "./a.out run_from"),
    SubStep("8.1.3", "s3_copy", lambda p: p.gen_const, "chmod +x copy.sh && ./copy.sh", "copy.sh"),
    SubStep(
        "8.1.4",
        "s4_rootmove",
        lambda p: p.const_run_from_run_to,
        "./rootmove.sh",
        "const_runForm_runTo/rootmove.sh",
    ),
    SubStep(
        "8.1.5",
        "s5_dryrun",
        lambda p: p.inj_sig_interval_db,
        _insert(0),
        "InjSigInterval dry run (-sub_switch 0)",
    ),
)
PART_1_SUBMIT = (
    SubStep(
        "8.1.6",
        "s6_submit",
        lambda p: p.inj_sig_interval_db,
        _insert(1),
        "InjSigInterval database submission (-sub_switch 1)",
        submission=True,
    ),
)
PART_2_PREPARE = (
    SubStep(
        "8.2.1",
        "s1_rootmove",
        lambda p: p.calib_const,
        "./rootmove.sh",
        "calibConst/rootmove.sh",
    ),
    SubStep(
        "8.2.2",
        "s2_dryrun",
        lambda p: p.inj_sig_time_db,
        _insert(0),
        "InjSigTime dry run (-sub_switch 0)",
    ),
)
PART_2_SUBMIT = (
    SubStep(
        "8.2.3",
        "s3_submit",
        lambda p: p.inj_sig_time_db,
        _insert(1),
        "InjSigTime database submission (-sub_switch 1)",
        submission=True,
    ),
)
PART_3_PREPARE = (
    SubStep("8.3.1", "s1_cp3", lambda p: p.offline_evt, "./cp_3files.sh", "cp_3files.sh"),
    SubStep(
        "8.3.2",
        "s2_duration",
        lambda p: f"{p.offline_evt}/duration_caculate",
        "./a.out",
        "duration_caculate/a.out",
    ),
    SubStep(
        "8.3.3",
        "s3_ccompare",
        lambda p: f"{p.offline_evt}/ccompare",
        "./a.out 2>&1",
        "ccompare/a.out",
        check=ccompare_check,
    ),
    SubStep("8.3.4", "s4_gen", lambda p: p.offline_evt, "./a.out {B} {F} {T}", "a.out BOSS F T"),
    SubStep(
        "8.3.5",
        "s5_filelist",
        lambda p: f"{p.offline_evt}/check",
        "ls ../OfflineEvtFilter_00*.root > file.txt 2>/dev/null",
        "listing OfflineEvtFilter_00*.root into file.txt",
    ),
    SubStep(
        "8.3.6",
        "s6_check",
        lambda p: f"{p.offline_evt}/check",
        "./a.out {B} {F} {T} 2>&1",
        "check/a.out",
        check=silent_check,
    ),
    SubStep("8.3.7", "s7_rootmove", lambda p: p.offline_evt, "./rootmove.sh", "rootmove.sh"),
    SubStep(
        "8.3.8",
        "s8_dryrun",
        lambda p: p.offline_evt_db,
        _insert(0),
        "OfflineEvtFilter dry run (-sub_switch 0)",
    ),
)
PART_3_SUBMIT = (
    SubStep(
        "8.3.9",
        "s9_submit",
        lambda p: p.offline_evt_db,
        _insert(1),
        "OfflineEvtFilter database submission (-sub_switch 1)",
        submission=True,
    ),
    SubStep(
        "8.3.10",
        "s10_reset_root",
        lambda p: p.check_db_alg,
        "bash reset_root.sh",
        "reset_root.sh",
    ),
)

PARTS: dict[str, tuple[str, tuple[SubStep, ...], tuple[SubStep, ...]]] = {
    "8.1": ("InjSigInterval", PART_1_PREPARE, PART_1_SUBMIT),
    "8.2": ("InjSigTime", PART_2_PREPARE, PART_2_SUBMIT),
    "8.3": ("OfflineEvtFilter", PART_3_PREPARE, PART_3_SUBMIT),
}


def submission_key(run_key: str, part: str, run_from: int, run_to: int, attempt: int = 1) -> str:
    """The remote key of attempt ``attempt`` of ``part``'s real submission (for the ledger)."""
    purpose = next(s for s in PARTS[part][2] if s.submission).purpose
    base = f"{detached_key(run_key, part.replace('.', '_'), f'r{run_from}-{run_to}')}.{purpose}"
    return validate.job_key(base if attempt == 1 else f"{base}-{attempt}")


def is_submission_key(key: str) -> bool:
    """A detached command that is a real submission: never killed, never restarted."""
    purposes = {s.purpose for _, _, subs in PARTS.values() for s in subs if s.submission}
    last = key.rsplit(".", 1)[-1]
    return last.split("-", 1)[0] in purposes


def _range_args(part: str, round: str, run_from: Any, run_to: Any) -> tuple[int, int]:
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


def _attempts(base: str, known: dict[str, Detached]) -> list[tuple[int, Detached]]:
    """Attempts of sub-step ``base`` (``base``, ``base-2`` ...), oldest first."""
    out = []
    for key, d in known.items():
        if key == base:
            out.append((1, d))
        elif key.startswith(base + "-") and key[len(base) + 1 :].isdigit():
            out.append((int(key[len(base) + 1 :]), d))
    return sorted(out, key=lambda x: x[0])


@dataclass
class _Done:
    sub: SubStep
    key: str
    detached: Detached
    reused: bool
    previous: list[str]


def _failure(sub: SubStep, d: Detached) -> str | None:
    """Why a finished sub-step counts as failed (None: it succeeded)."""
    if d.exit_code != 0:
        detail = (d.stderr or d.stdout or "").strip()[-300:]
        return f"exit {d.exit_code}" + (f": {detail}" if detail else "")
    if sub.check is not None:
        return sub.check(d.stdout or "")
    return None


def _run_substeps(
    site: RemoteSite,
    part: str,
    subs: tuple[SubStep, ...],
    *,
    run_key: str,
    run_from: int,
    run_to: int,
    timeout: float,
    poll: float,
    fields: dict[str, Any],
    resubmit_after: str | None = None,
) -> list[_Done]:
    """Run ``subs`` in order; a finished-and-good sub-step is never started again.

    A submission sub-step whose latest attempt failed or was lost is started again only when
    ``resubmit_after`` names that attempt (a person's decision, recorded by the caller).
    """
    log = step_logger()
    paths = site.paths(fields["round"])
    prefix = detached_key(run_key, part.replace(".", "_"), f"r{run_from}-{run_to}")
    known = {d.key: d for d in site.list_detached(prefix + ".")}
    done: list[_Done] = []
    for sub in subs:
        base = validate.job_key(f"{prefix}.{sub.purpose}")
        attempts = _attempts(base, known)
        previous = [d.key for _, d in attempts]
        if attempts:
            n, latest = attempts[-1]
            if latest.state == "running":
                log.info("%s: re-attaching to running %s", sub.id, latest.key)
                status = site.wait_detached(latest.key, timeout=timeout, poll=poll)
            else:
                status = site.detached(latest.key)  # with its output, for the check
            if status.lost and sub.submission:
                fail(
                    part,
                    LOST_CODE,
                    f"{sub.id} {sub.what}: the earlier attempt {latest.key} ended without an "
                    "exit status; whether it reached the database is unknown. Check the "
                    "database by hand before anything is submitted again",
                    data={"substep": sub.id, "key": latest.key},
                    **fields,
                )
            if status.ok and _failure(sub, status) is None:
                log.info("%s %s already done (%s): not run again", sub.id, sub.what, latest.key)
                done.append(_Done(sub, latest.key, status, True, previous[:-1]))
                continue
            why = "lost" if status.lost else _failure(sub, status)
            if sub.submission and resubmit_after != latest.key:
                fail(
                    part,
                    SUBMISSION_CODE,
                    f"{sub.id} {sub.what}: attempt {latest.key} failed ({why}); a real "
                    "submission is never started again without a person's decision that "
                    "names that attempt",
                    data={
                        "substep": sub.id,
                        "key": latest.key,
                        "exit_code": status.exit_code,
                        "output": (status.stdout or "")[-4000:],
                        "stderr": (status.stderr or "")[-4000:],
                    },
                    **fields,
                )
            key = validate.job_key(f"{base}-{n + 1}")
            log.warning(
                "%s %s: attempt %d failed (%s); starting attempt %d",
                sub.id,
                sub.what,
                n,
                why,
                n + 1,
            )
        else:
            key = base
        site.start_detached(
            key,
            sub.render(run_from, run_to, site.settings.bosse),
            sub.cwd(paths),
            round=fields["round"],
        )
        status = site.wait_detached(key, timeout=timeout, poll=poll)
        why = _failure(sub, status)
        if why is not None:
            lost = status.lost and sub.submission  # died without an exit status: DB unknown
            code = SUBMISSION_CODE if sub.submission else SUBSTEP_CODE
            fail(
                part,
                LOST_CODE if lost else code,
                f"{sub.id} {sub.what} failed: {why}",
                data={
                    "substep": sub.id,
                    "key": key,
                    "exit_code": status.exit_code,
                    "output": (status.stdout or "")[-4000:],
                    "stderr": (status.stderr or "")[-4000:],
                    "previous_attempts": previous,
                    "done": [d.sub.id for d in done],
                },
                **fields,
            )
        done.append(_Done(sub, key, status, False, previous))
    return done


def _summary(done: list[_Done]) -> list[dict[str, Any]]:
    return [
        {
            "substep": d.sub.id,
            "key": d.key,
            "exit_code": d.detached.exit_code,
            "reused": d.reused,
            **({"previous_attempts": d.previous} if d.previous else {}),
        }
        for d in done
    ]


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
    f, t = _range_args(part, round, run_from, run_to)
    fields: dict[str, Any] = {"round": round}
    done = _run_substeps(
        site,
        part,
        prepare,
        run_key=run_key,
        run_from=f,
        run_to=t,
        timeout=max_wait_minutes * MIN,
        poll=max(0.05, min(poll_seconds, 5.0)),
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
            "substeps": _summary(done),
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
    f, t = _range_args(part, round, run_from, run_to)
    fields: dict[str, Any] = {"round": round}
    prefix = detached_key(run_key, part.replace(".", "_"), f"r{f}-{t}")
    dry = prepare[-1]
    dry_base = f"{prefix}.{dry.purpose}"
    known = {d.key: d for d in site.list_detached(prefix + ".")}
    dry_attempts = _attempts(dry_base, known)
    if not dry_attempts or not dry_attempts[-1][1].ok:
        fail(
            part,
            NO_DRY_RUN_CODE,
            f"{name}: no successful dry run (-sub_switch 0) of runs {f}–{t} in this flow run; "
            "run the prepare step first",
            data={"approved_by": who},
            **fields,
        )
    done = _run_substeps(
        site,
        part,
        submit,
        run_key=run_key,
        run_from=f,
        run_to=t,
        timeout=max_wait_minutes * MIN,
        poll=max(0.05, min(poll_seconds, 5.0)),
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
            "substeps": _summary(done),
        },
        **fields,
    )


# --------------------------------------------------------------------------- tasks
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
