"""What an unfinished batch wait tells the operator: crash, held job or timeout, with evidence.

Why its own module: failures are classified before anything is retried (spec steps.md rule
5): a crash or a held job is ``manual`` with the failing log lines, only jobs still running
at the limit give the step's retryable timeout code. Every batch step ends its wait here.

- ``fail_incomplete(site, step, report, *, directory, logs, end_markers, crash_code,
  timeout_code, timed_out, max_wait_minutes, total, data, **fields) -> NoReturn`` — the
  classification of an incomplete wait: crash → ``crash_code`` (manual, with
  ``crash_evidence``), held → 110 (manual), else ``timeout_code`` (retry).
- ``require_complete(site, step, waited, data, *, crash_code, timeout_code, logs=None,
  **base) -> dict`` — a batch step's verdict on its wait: the result fields (``base`` with
  the runs) when every run is complete, else ``fail_incomplete``.
- ``crash_evidence(site, directory, logs) -> {run: ["log: line", ...]}`` — ONE command.
- ``missing_job_files(runs, without, found) -> JobFileGap`` — the evidence for runs without
  a job file (names found, run numbers cut by the site's script).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from steps.job_states import held_runs, run_failures, running_runs
from steps.output_waits import Waited, run_fields
from steps.remote import validate
from steps.remote.polling import FAILURE_REGEX, PollReport, relative_name
from steps.remote.validate import q, qpath
from steps.step_log import fail

if TYPE_CHECKING:
    from steps.remote.site import RemoteSite

__all__ = [
    "JobFileGap",
    "crash_evidence",
    "fail_incomplete",
    "missing_job_files",
    "require_complete",
]

# The lines shown as evidence of a crash: the failure patterns first, then error-looking
# lines, else the end of the log.
EVIDENCE_REGEX = r"error|exception|abort|terminate called|cannot|can not|fatal|killed"
EVIDENCE_LINES = 5
EVIDENCE_LINE_CHARS = 300


def crash_evidence(
    site: RemoteSite,
    directory: str,
    logs: Mapping[str, Sequence[str]],
    failure_regex: str = FAILURE_REGEX,
) -> dict[str, list[str]]:
    """The failing log lines of crashed runs, for the operator: run → ``"log: line"``s.

    ONE command for all runs. Per log (names or globs relative to ``directory``): up to 5
    lines matching ``failure_regex``, else up to 5 error-looking lines, else its last 3
    lines; an empty or missing log says so.
    """
    if not logs:
        return {}
    parts = [
        f"cd -- {qpath(directory)} || exit 3",
        "shopt -s nullglob",
        f"__f={q(failure_regex)}; __e={q(EVIDENCE_REGEX)}",
        '__ev() { local r=$1 g; shift; for g in "$@"; do local any=; for f in $g; do any=1;'
        ' printf "::log:: %s %s\\n" "$r" "$f";'
        " if [ ! -s \"$f\" ]; then echo '(empty)';"
        f' else grep -a -m{EVIDENCE_LINES} -E -e "$__f" -- "$f" ||'
        f' grep -a -m{EVIDENCE_LINES} -i -E -e "$__e" -- "$f" || tail -n 3 -- "$f"; fi; done;'
        ' [ -n "$any" ] || printf "::log:: %s %s\\n(missing)\\n" "$r" "$g"; done; }',
    ]
    for run, names in logs.items():
        # globs expand inside the function (unquoted $g): pass them quoted
        words = " ".join(q(relative_name(n)) for n in names)
        parts.append(f"__ev {q(validate.run(run))} {words}")
    res = site.run("\n".join(parts) + "\nexit 0")
    out: dict[str, list[str]] = {}
    run = log = ""
    for line in res.stdout.splitlines():
        if line.startswith("::log:: "):
            _, run, log = line.split(" ", 2)
            out.setdefault(run, [])
            continue
        if run and line.strip():
            out[run].append(f"{log}: {line.strip()[:EVIDENCE_LINE_CHARS]}")
    return out


HELD_CODE = 110  # BATCH_JOB_HELD (manual)
MAX_LISTED = 100


def fail_incomplete(
    site: RemoteSite,
    step: str,
    report: PollReport,
    *,
    directory: str,
    logs: Mapping[str, Sequence[str]],
    end_markers: Mapping[str, Sequence[str]] | None,
    crash_code: int,
    timeout_code: int,
    timed_out: bool,
    max_wait_minutes: float,
    total: int,
    data: dict[str, Any],
    **fields: Any,
) -> NoReturn:
    """Fail a batch wait that ended with incomplete runs, with the code for what happened.

    Classified before any retry: runs whose jobs crashed (``run_failures``) → ``crash_code``
    (manual) with the failing log lines (``crash_evidence``, one command); jobs the batch
    system holds → 110 BATCH_JOB_HELD (manual); only jobs still queued or running at the
    limit (or, without the batch system's word, runs simply not there yet) → ``timeout_code``
    (retry: a retry re-attaches and waits on, it resubmits nothing that runs).
    """
    failures = run_failures(report, end_markers)
    held = sorted(int(r) for r in held_runs(report))
    running = sorted(int(r) for r in running_runs(report))
    incomplete = sorted(int(r) for r in report.incomplete)
    inc = {str(r) for r in incomplete}
    info: dict[str, Any] = {
        **data,
        "missing": {str(k): v for k, v in report.missing.items() if str(k) in inc},
        "failed": failures,
        "timed_out": timed_out,
        "held": held,
        "still_running": running,
    }
    if report.job_states:
        info["job_states"] = {str(k): v for k, v in report.job_states.items()}
    if report.batch is not None and not report.batch.ok:
        info["batch_query_error"] = report.batch.error
    if failures or held:
        crashed = sorted(int(r) for r in failures)
        parts: list[str] = []
        if crashed:
            evidence = crash_evidence(site, directory, {r: logs.get(r, []) for r in failures})
            info["evidence"] = evidence
            parts.append(f"{len(crashed)}/{total} runs crashed: {crashed}")
            for r in crashed[:5]:
                reason = failures[str(r)]
                said = [reason] if reason.startswith("job ended") else []
                lines = [x for x in evidence.get(str(r), []) if not x.endswith(": (empty)")]
                parts.append(f"run {r}: " + " | ".join([*said, *lines[:2]] or [reason]))
        if held:
            parts.append(f"jobs of runs {held} held by the batch system (hep_q state H)")
        if running:
            parts.append(f"still running, left alone: {running}")
        fail(
            step,
            crash_code if crashed else HELD_CODE,
            "; ".join(parts) + ". A retry would not fix this: read the evidence, fix the "
            "cause, then choose retry (only the failed jobs are resubmitted) or abort",
            data=info,
            **fields,
        )
    why = f"not complete within {max_wait_minutes} min" if timed_out else "incomplete"
    fail(
        step,
        timeout_code,
        f"{len(incomplete)}/{total} runs {why}: {incomplete}"
        + (f"; jobs still queued or running: {running}" if running else ""),
        data=info,
        **fields,
    )


def require_complete(
    site: RemoteSite,
    step: str,
    waited: Waited,
    data: dict[str, Any],
    *,
    crash_code: int,
    timeout_code: int,
    logs: Mapping[str, Sequence[str]] | None = None,
    **base: Any,
) -> dict[str, Any]:
    """The result fields (``run_fields``) of a wait that left no run incomplete; otherwise
    fail here with the code for what happened (``fail_incomplete``).

    ``logs``: the logs to show as crash evidence, when not every failure log is worth it
    (step 2.1); by default the wait's ``failure_logs``.
    """
    fields = run_fields(waited.report, base)
    if fields["runs_incomplete"]:
        outputs = waited.outputs
        fail_incomplete(
            site,
            step,
            waited.report,
            directory=outputs.directory,
            logs=(outputs.failure_logs or {}) if logs is None else logs,
            end_markers=outputs.end_markers,
            crash_code=crash_code,
            timeout_code=timeout_code,
            timed_out=waited.timed_out,
            max_wait_minutes=waited.max_wait_minutes,
            total=len(outputs.expected),
            data=data,
            **fields,
        )
    return fields


@dataclass
class JobFileGap:
    """Runs of the date without a job file, next to the job files that were found."""

    text: str
    data: dict[str, Any]


def missing_job_files(
    runs: Sequence[int], without: Sequence[int], found: Mapping[int, Sequence[str]]
) -> JobFileGap:
    """The evidence for runs without a job file: the names found, and the runs of other
    numbers whose job files are there — a run number the site's script cut to 5 digits
    (``${name:6:5}`` of ``run_0123456_...``) shows up as a part of a missing run."""
    mine = set(runs)
    names = sorted(n for ns in found.values() for n in ns)
    others = sorted(n for r, ns in found.items() if r not in mine for n in ns)
    cut = {str(m): sorted(r for r in found if r not in mine and str(r) in str(m)) for m in without}
    cut = {m: rs for m, rs in cut.items() if rs}
    text = ""
    if others:
        text = f"job files found for runs not of this date: {', '.join(others[:10])}"
    if cut:
        text += "; run numbers cut by the site's script? " + ", ".join(
            f"{m} -> {'/'.join(map(str, rs))}" for m, rs in cut.items()
        )
    elif names and not others:
        text = f"job files found: {', '.join(names[:10])}"
    data = {
        "runs_without_job_file": list(without),
        "job_files_found": names[:MAX_LISTED],
        "job_files_other_runs": others[:MAX_LISTED],
        "run_numbers_cut": cut,
    }
    return JobFileGap(text.lstrip("; "), data)
