"""Waiting for the outputs of batch jobs: ONE remote command per poll cycle, with a limit.

Why its own module: steps 1.1, 2.1, 2.4 and the job stages of 3.1–6.1 wait the same way
(spec steps.md rule 4): all runs in one command, the batch system asked in the same
command, an early return when nothing is left to wait for.

- ``ExpectedOutputs(directory, expected, failure_logs=None, end_markers=None, jobs_file=None,
  job_files=None, anomalies=(), tree=False)`` — what a wait looks for, per run; with
  ``jobs_file`` + ``job_files`` (run → job file names) each poll also reads the batch
  system's job states (still ONE command per cycle).
- ``wait_for_outputs(site, outputs, *, max_wait_minutes, poll_seconds,
  stop_when_only_failed=True) -> Waited`` — poll until complete, an anomaly or the limit;
  ``Waited(outputs, report, timed_out, max_wait_minutes)`` says how it ended.
- ``poll_outputs(site, outputs) -> PollReport`` — one such poll.
- ``poll_tree(site, directory, expected, *, anomalies=(), failure_logs=None) -> PollReport`` —
  ``poll_files`` for exact names in sub-directories (``{run}/hist{run}_{id}.root``), ONE command.
- ``run_fields(report, base) -> dict`` — ``base`` with the sorted ``runs_complete`` /
  ``runs_incomplete`` of a wait, as the step's result fields.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from steps.file_records import plain_name
from steps.job_states import apply_job_states, held_runs, run_failures
from steps.remote import validate
from steps.remote.polling import FAILURE_REGEX, PollReport, batch_script, parse_batch
from steps.remote.validate import InvalidValue, q, qpath
from steps.step_log import step_logger

if TYPE_CHECKING:
    from steps.remote.site import RemoteSite

__all__ = [
    "ExpectedOutputs",
    "Waited",
    "poll_outputs",
    "poll_tree",
    "run_fields",
    "wait_for_outputs",
]


@dataclass(frozen=True)
class ExpectedOutputs:
    """What a wait looks for in ``directory``, per run (keys: run numbers as text).

    ``expected``: the outputs the run's jobs must leave (present, non-empty);
    ``failure_logs``: where a failure line shows; ``end_markers``: names whose presence
    means the run's jobs ended; ``job_files``: the names the batch system knows the jobs by,
    asked about through ``jobs_file``; ``anomalies``: files that must not appear; ``tree``:
    names in sub-directories (``poll_tree``). Why one object: a batch step's first look on
    a retry, its wait and the judgement after it (``steps.wait_failures.require_complete``)
    must see the runs alike.
    """

    directory: str
    expected: Mapping[str, list[str]]
    failure_logs: Mapping[str, list[str]] | None = None
    end_markers: Mapping[str, Sequence[str]] | None = None
    jobs_file: str | None = None
    job_files: Mapping[str, Sequence[str]] | None = None
    anomalies: Sequence[str] = ()
    tree: bool = False


@dataclass(frozen=True)
class Waited:
    """How a wait for ``outputs`` ended: its last report, whether it hit its limit, and the
    limit."""

    outputs: ExpectedOutputs
    report: PollReport
    timed_out: bool
    max_wait_minutes: float


def poll_tree(
    site: RemoteSite,
    directory: str,
    expected: Mapping[str, Sequence[str]],
    *,
    anomalies: Sequence[str] = (),
    failure_logs: Mapping[str, Sequence[str]] | None = None,
    failure_regex: str = FAILURE_REGEX,
    jobs_file: str | None = None,
) -> PollReport:
    """``RemoteSite.poll_files`` for names in sub-directories (``85391/hist85391_0.root``).

    ``poll_files`` takes plain names only; step 2.1's outputs live in one sub-directory per
    run. Still ONE remote command: a ``find`` sizes every file below ``directory`` and one
    ``grep`` reads the failure logs; with ``jobs_file`` the batch system is asked first
    (``PollReport.batch``). Names are exact relative paths (no globs).
    """
    runs = list(expected)
    names = {r: [_rel_name(n) for n in expected[r]] for r in runs}
    logs = {r: [_rel_name(n) for n in (failure_logs or {}).get(r, [])] for r in runs}
    extra = [_rel_name(n) for n in anomalies]
    all_names = [n for r in runs for n in names[r]] + extra
    depth = max([n.count("/") + 1 for n in all_names] or [1])
    log_words = " ".join(q(n) for r in runs for n in logs[r])
    grep = f"grep -a -s -m1 -H -Z -E -e {q(failure_regex)} -- {log_words}" if log_words else "true"
    batch = batch_script(jobs_file, site.settings.batch_query_cmd) + "\n" if jobs_file else ""
    # labelled like poll_files' script, so the history (and the bench) knows a poll cycle
    cmd = (
        f"# topup: poll of {validate.path(directory)} (tree)\n"
        + batch
        + (
            f"cd -- {qpath(directory)} 2>/dev/null || {{ printf 'NODIR\\0'; exit 0; }}; "
            f"find . -mindepth 1 -maxdepth {depth} -type f -printf '%s\\t%P\\0'; "
            f"printf 'GREP\\0'; {grep}; exit 0"
        )
    )
    res = site.run(cmd)
    report = PollReport(directory=directory)
    stdout = res.stdout
    if jobs_file:
        report.batch, stdout = parse_batch(stdout)
    if stdout.startswith("NODIR\0"):
        report.directory_exists = False
        report.missing = {r: list(names[r]) for r in runs if names[r]}
        report.incomplete = list(runs)
        return report
    listing, _, grep_out = stdout.partition("GREP\0")
    sizes: dict[str, int] = {}
    for rec in listing.split("\0"):
        size, sep, name = rec.partition("\t")
        if sep and size.isdigit():
            sizes[name] = int(size)
    first_fail: dict[str, str] = {}
    for rec in grep_out.split("\n"):
        name, sep, line = rec.partition("\0")
        if sep:
            first_fail.setdefault(name, line.rstrip("\r"))
    for r in runs:
        for n in names[r]:
            if n not in sizes:
                report.missing.setdefault(r, []).append(n)
                continue
            report.present.setdefault(r, {})[n] = sizes[n]
            report.files.setdefault(r, {})[n] = sizes[n]
            if sizes[n] == 0:
                report.empty.setdefault(r, []).append(n)
        for n in logs[r]:
            if n in first_fail:
                report.failed[r] = first_fail[n][:500]
                report.failed_files[r] = n
                break
        bad = r in report.missing or r in report.empty or r in report.failed
        (report.incomplete if bad else report.complete).append(r)
    report.anomalies = [n for n in extra if n in sizes]
    return report


def _rel_name(value: str) -> str:
    """A relative path of plain names (``85391/hist85391_0.root``): no globs, no '..'."""
    if not isinstance(value, str) or not value or value.startswith("/"):
        raise InvalidValue("relative name", value)
    for part in value.split("/"):
        plain_name(part)
        if part in {".", ".."}:
            raise InvalidValue("relative name", value)
    return value


def wait_for_outputs(
    site: RemoteSite,
    outputs: ExpectedOutputs,
    *,
    max_wait_minutes: float,
    poll_seconds: float,
    stop_when_only_failed: bool = True,
) -> Waited:
    """Poll all runs with one remote command per cycle until complete or the limit passes.

    ``timed_out`` is False when it returns early: when one of ``outputs.anomalies`` appears,
    or when every incomplete run is known to have failed (``run_failures``) or to be held by
    the batch system, in two consecutive cycles — nothing left to wait for
    (``stop_when_only_failed``). ``max_wait_minutes=0`` polls exactly once.
    """
    log = step_logger()
    directory = outputs.directory
    deadline = time.monotonic() + max(0.0, max_wait_minutes) * 60.0
    total = len(outputs.expected)
    last_done = -1
    was_all_failed = False
    warned_batch = False
    while True:
        report = poll_outputs(site, outputs)
        if report.batch is not None and not report.batch.ok and not warned_batch:
            log.warning("batch query failed (%s): judging by files only", report.batch.error)
            warned_batch = True
        done = len(report.complete)
        if done != last_done:
            log.info("%d/%d runs complete in %s", done, total, directory)
            last_done = done
        if not report.incomplete:
            return Waited(outputs, report, False, max_wait_minutes)
        if report.anomalies:
            log.warning("anomaly in %s: %s", directory, ", ".join(report.anomalies))
            return Waited(outputs, report, False, max_wait_minutes)
        if stop_when_only_failed:
            failures = run_failures(report, outputs.end_markers)
            ended = set(failures) | set(held_runs(report))
            all_failed = all(str(r) in ended for r in report.incomplete)
            if all_failed and was_all_failed:
                log.warning("runs failed in %s: %s", directory, failures)
                return Waited(outputs, report, False, max_wait_minutes)
            was_all_failed = all_failed
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning(
                "%d/%d runs complete in %s after %.1f min; missing: %s",
                done,
                total,
                directory,
                max_wait_minutes,
                ", ".join(map(str, report.incomplete)),
            )
            return Waited(outputs, report, True, max_wait_minutes)
        pause = min(poll_seconds, remaining)
        if was_all_failed:  # confirm a failure quickly instead of after a full poll period
            pause = min(pause, 1.0)
        time.sleep(pause)


def poll_outputs(site: RemoteSite, outputs: ExpectedOutputs) -> PollReport:
    """One poll (ONE remote command): files, failure lines and, with ``jobs_file``, the
    batch system's job states folded in (``apply_job_states``)."""
    poll = partial(poll_tree, site) if outputs.tree else site.poll_files
    logs = outputs.failure_logs
    report = poll(
        outputs.directory,
        {k: list(v) for k, v in outputs.expected.items()},
        anomalies=list(outputs.anomalies),
        failure_logs={k: list(v) for k, v in logs.items()} if logs else None,
        jobs_file=outputs.jobs_file,
    )
    if outputs.jobs_file and outputs.job_files is not None:
        apply_job_states(report, outputs.job_files)
    return report


def run_fields(report: PollReport, base: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` plus the wait's ``runs_complete`` and ``runs_incomplete`` (sorted numbers)."""
    return {
        **base,
        "runs_complete": sorted(int(r) for r in report.complete),
        "runs_incomplete": sorted(int(r) for r in report.incomplete),
    }
