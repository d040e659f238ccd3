"""Helpers shared by the step modules (steps 0 – 8).

Why: every step validates its inputs the same way, finds the runs of a date the same way,
waits for batch outputs the same way (one poll command per cycle, with a limit), merges PNGs
with the same SL6-container heredoc and records files with the same facts. Keeping that here
keeps the step modules short and their behaviour uniform.

Stable API (other step modules import these names):

- ``step_logger()`` — the Prefect run logger inside a flow/task run, else ``topup.steps``.
- ``fail(step, code, message, **fields) -> NoReturn`` — raise ``StepError`` with the dictionary
  entry of ``code``; outcome WARNING for ``continue`` codes, else FAILED. ``fields`` are
  ``StepResult`` fields (``date``, ``round``, ``runs_complete``, ``files``, ``data`` ...).
- ``detached_key(run_key, step, purpose) -> str`` — validated key ``"{run_key}.{step}.{purpose}"``.
- ``date_runs(site, round, date) -> list[int]`` — validates, ONE ``ls`` of ``DATA/{date}``,
  returns the sorted run numbers of its raw files; raises ``DateUnavailable`` when the
  directory is missing or holds no raw file.
- ``check_inputs(step, site, round, date, run_key=None) -> list[int]`` — the "validate first"
  rule as one call: like ``date_runs`` but failures raise ``StepError`` (22 bad date, 20 bad
  round or run key, 70 date without raw data; all ``manual``).
- ``record_jobs(site, run_key, output_text) -> list[int]`` — parse ``submitted to cluster N``,
  append the new ids (never twice) to ``<control_dir>/<run_key>.jobs``.
- ``record_detached_jobs(site, run_key, key) -> list[int]`` — same, from the FULL stdout file
  of detached command ``key`` (``Detached.stdout`` is only a tail).
- ``submit_once(site, *, run_key, step, purpose, command, cwd, timeout, cleanup=None,
  succeeded=None, new_attempt=False, env=True, poll=1.0, round=None) -> Submission`` — the
  idempotent submission rule: start attempt 1 (after ``cleanup``), re-attach on a retry, start
  attempt n+1 only when the last attempt failed or ``new_attempt`` (a job known to have
  failed); records cluster ids. ``round`` exports its ``ROUND_NUMBER`` after the env script
  (the site's script hard-codes 18); every step passes the round it runs for.
- ``latest_attempt(site, run_key, step, purpose) -> Detached | None`` — newest attempt of
  that ``submit_once`` key family (to decide before starting, e.g. 2.2's already-merged case).
- ``run_detached_once(site, key, command, cwd, timeout, env=True, poll=1.0, round=None)
  -> Detached`` — start (or re-attach to) a detached command and wait for it;
  ``RemoteTimeout`` on overrun; ``round`` as for ``submit_once``.
- ``wait_detached(site, key, timeout, poll=1.0) -> Detached`` — wait with back-off (50 ms
  doubling up to ``poll``); ``RemoteTimeout`` on overrun.
- ``step_jobs_file(site, run_key, step) -> str`` — ``<control_dir>/<run_key>.<step>.jobs``,
  the cluster ids one step submitted (written by ``record_detached_jobs``).
- ``wait_for_outputs(site, directory, expected, *, anomalies, failure_logs, max_wait_minutes,
  poll_seconds, stop_on_anomaly=True, stop_when_only_failed=True, end_markers=None,
  tree=False, jobs_file=None, job_files=None) -> (PollReport, timed_out)`` — with
  ``jobs_file`` + ``job_files`` (run → job file names) each poll also reads the batch
  system's job states (still ONE command per cycle).
- ``poll_outputs(...)`` — one such poll; ``apply_job_states(report, job_files)`` folds the
  batch answer in (``report.job_states``: running / held / ended).
- ``held_runs(report)``, ``running_runs(report)`` — incomplete runs by batch state.
- ``fail_incomplete(site, step, report, *, directory, logs, end_markers, crash_code,
  timeout_code, timed_out, max_wait_minutes, total, data, **fields) -> NoReturn`` — the
  classification of an incomplete wait: crash → ``crash_code`` (manual, with
  ``crash_evidence``), held → 110 (manual), else ``timeout_code`` (retry).
- ``crash_evidence(site, directory, logs) -> {run: ["log: line", ...]}`` — ONE command.
- ``missing_job_files(runs, without, found) -> JobFileGap`` — the evidence for runs without
  a job file (names found, run numbers cut by the site's script).
- ``poll_tree(site, directory, expected, *, anomalies=(), failure_logs=None) -> PollReport`` —
  ``poll_files`` for exact names in sub-directories (``{run}/hist{run}_{id}.root``), ONE command.
- ``run_failures(report, end_markers=None) -> dict[str, str]`` — runs known to have failed:
  with batch states, incomplete runs whose jobs have all ended; else a failure line in their
  logs, or every end marker present while still incomplete.
- ``merge_pngs(site, directory, pngs, pdf_name, timeout=600) -> CommandResult`` and
  ``merge_png_sets(site, directory, [(pngs, pdf_name), ...], timeout=600) -> CommandResult`` —
  the SL6-container ``convert`` heredoc with an explicit, validated file list.
- ``merge_and_download(step, site, *, directory, pngs=[(run, name)], pdf_name, local_name,
  run_key, merge_code, download_code, timeout=600, **fields) -> StepResult`` — a whole
  merge-and-download step: fails with ``merge_code`` or ``download_code`` (a required
  report: ``manual``, an operator decides).
- ``download_path(site, run_key, local_name) -> Path`` — in the run's folder
  (``steps.download_folders``: ``downloads_dir/<round>/<date>/<run name>/name``).
- ``download_pdf(site, remote_path, local_path, run=None) -> FileRecord`` — sha256-verified.
- ``content_type(path) -> str``; ``file_records(site, specs) -> list[FileRecord]`` — ONE
  ``file_facts`` call; ``specs`` are ``FileSpec(path, run, role)`` or plain tuples.
- ``parse_runs(names, pattern) -> list[int]`` — run numbers from names via a regex group.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from steps import download_folders, errors
from steps.remote import validate
from steps.remote.errors import DownloadError, RemoteTimeout
from steps.remote.polling import (
    ACTIVE_STATES,
    FAILURE_REGEX,
    HELD_STATE,
    PollReport,
    batch_script,
    parse_batch,
)
from steps.remote.validate import InvalidValue, q, qpath
from steps.results import FileRecord, Outcome, StepError, StepResult

if TYPE_CHECKING:
    from steps.remote.site import Detached, RemoteSite
    from steps.remote.transport import CommandResult

__all__ = [
    "DateUnavailable",
    "FileSpec",
    "Submission",
    "check_inputs",
    "content_type",
    "date_runs",
    "detached_key",
    "download_path",
    "download_pdf",
    "fail",
    "file_records",
    "latest_attempt",
    "merge_and_download",
    "merge_png_sets",
    "merge_pngs",
    "parse_runs",
    "poll_tree",
    "record_detached_jobs",
    "record_jobs",
    "run_detached_once",
    "run_failures",
    "step_logger",
    "submit_once",
    "wait_detached",
    "wait_for_outputs",
]

RAW_RUN_RE = re.compile(r"^run_(\d+)_.*\.raw$")
CLUSTER_RE = re.compile(r"submitted to cluster (\d+)")
PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")
MERGE_TIMEOUT = 600.0

# Code used when a date exists nowhere in DATA or has no raw files: a validation rule failed
# and only a person can fix it (choose another date, wait for the data).
NO_DATA_CODE = 70
INVALID_DATE_CODE = 22
INVALID_PARAMETER_CODE = 20


# --------------------------------------------------------------------------- logging / failing


def step_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run (so lines reach the UI), else ``topup.steps``."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("topup.steps")


def fail(step: str, code: int, message: str, **fields: Any) -> NoReturn:
    """Raise ``StepError`` for ``code``; a ``continue`` code gives outcome WARNING."""
    info = errors.error(code)
    outcome = fields.pop("outcome", None)
    if outcome is None:
        outcome = Outcome.WARNING if info.action == "continue" else Outcome.FAILED
    result = StepResult(step=step, outcome=outcome, message=message, error=info, **fields)
    step_logger().warning("step %s: [%s %s] %s", step, info.code, info.name, message)
    raise StepError(result)


def detached_key(run_key: str, step: str, purpose: str) -> str:
    """``"{run_key}.{step}.{purpose}"``, validated so it can name a remote control dir."""
    return validate.job_key(f"{validate.job_key(run_key)}.{step}.{purpose}")


# --------------------------------------------------------------------------- dates and runs


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


# --------------------------------------------------------------------------- batch jobs


def record_jobs(site: RemoteSite, run_key: str, output_text: str) -> list[int]:
    """Append the cluster ids in ``output_text`` to ``<control_dir>/<run_key>.jobs``.

    Ids already in the file are not added again, so re-reading the output of a re-attached
    command is harmless. Returns the ids found in ``output_text``.
    """
    validate.job_key(run_key)
    ids = sorted({int(m) for m in CLUSTER_RE.findall(output_text)})
    if not ids:
        return []
    ctl = validate.path(site.settings.control_dir)
    jobs_file = f"{ctl.rstrip('/')}/{run_key}.jobs"
    words = " ".join(q(str(i)) for i in ids)
    cmd = (
        f"mkdir -p {qpath(ctl)} && touch {qpath(jobs_file)} && "
        f'for id in {words}; do grep -qx "$id" {qpath(jobs_file)} || '
        f'echo "$id" >> {qpath(jobs_file)}; done'
    )
    res = site.run(cmd)
    if not res.ok:
        step_logger().warning("could not record job ids %s: %s", ids, res.stderr.strip()[:200])
    return ids


def wait_detached(site: RemoteSite, key: str, timeout: float, poll: float = 1.0) -> Detached:
    """``RemoteSite.wait_detached`` with back-off: first look after 50 ms, then doubling up to
    ``poll`` — short commands return at once, long ones cost one status command per ``poll``.
    ``RemoteTimeout`` when still running after ``timeout`` seconds (it keeps running)."""
    deadline = time.monotonic() + max(timeout, 0.0)
    interval = min(0.05, poll)
    while True:
        status = site.detached(key, running_tail_bytes=0)
        if status.state != "running":
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RemoteTimeout(f"detached {key}", timeout)
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, max(poll, 0.01))


def record_detached_jobs(site: RemoteSite, run_key: str, key: str) -> list[int]:
    """Like ``record_jobs`` but reads the FULL stdout file of detached command ``key``.

    ``Detached.stdout`` is only a tail; a generator submitting many jobs may print more.
    One remote command: grep the ids, append the new ones, print all ids found.
    """
    validate.job_key(run_key)
    validate.job_key(key)
    ctl = validate.path(site.settings.control_dir).rstrip("/")
    out_file = f"{ctl}/{key}/stdout"
    jobs_file = f"{ctl}/{run_key}.jobs"
    step = key[len(run_key) + 1 :].split(".", 1)[0] if key.startswith(f"{run_key}.") else ""
    files = [jobs_file] + ([step_jobs_file(site, run_key, step)] if step else [])
    cmd = (
        f"mkdir -p {qpath(ctl)} && touch {' '.join(qpath(f) for f in files)} && "
        f"{{ grep -o 'submitted to cluster [0-9]*' {qpath(out_file)} 2>/dev/null || true; }} "
        "| awk '{print $4}' | sort -un | while read -r id; do "
        + "".join(f'grep -qx "$id" {qpath(f)} || echo "$id" >> {qpath(f)}; ' for f in files)
        + 'echo "$id"; done'
    )
    res = site.run(cmd)
    if not res.ok:
        step_logger().warning("could not record job ids of %s: %s", key, res.stderr.strip()[:200])
    return sorted({int(x) for x in res.stdout.split() if x.isdigit()})


def step_jobs_file(site: RemoteSite, run_key: str, step: str) -> str:
    """``<control_dir>/<run_key>.<step>.jobs``: the cluster ids one step of one flow run
    submitted, over all its attempts and resubmissions (the waits ask the batch system
    about exactly these)."""
    ctl = validate.path(site.settings.control_dir).rstrip("/")
    return f"{ctl}/{validate.job_key(f'{validate.job_key(run_key)}.{step}')}.jobs"


@dataclass
class Submission:
    """What ``submit_once`` did: the detached command it ended with and how it got there."""

    key: str
    attempt: int
    started: bool  # True: this call started it; False: re-attached to an earlier start
    detached: Detached
    job_ids: list[int] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)  # keys of earlier failed attempts


def _attempt_of(base: str, key: str) -> int | None:
    if key == base:
        return 1
    rest = key[len(base) :]
    if key.startswith(base) and rest.startswith("-") and rest[1:].isdigit():
        return int(rest[1:])
    return None


def latest_attempt(site: RemoteSite, run_key: str, step: str, purpose: str) -> Detached | None:
    """The newest attempt of ``submit_once``'s key family, or None if never started."""
    base = detached_key(run_key, step, purpose)
    attempts = {
        n: d for d in site.list_detached(base) if (n := _attempt_of(base, d.key)) is not None
    }
    return site.detached(attempts[max(attempts)].key) if attempts else None


def submit_once(
    site: RemoteSite,
    *,
    run_key: str,
    step: str,
    purpose: str,
    command: str,
    cwd: str,
    timeout: float,
    cleanup: str | None = None,
    succeeded: Callable[[Detached], bool] | None = None,
    new_attempt: bool = False,
    env: bool = True,
    poll: float = 1.0,
    round: str | None = None,
) -> Submission:
    """Run a submitting command once per flow run, re-attaching on retries.

    Keys: ``{run_key}.{step}.{purpose}`` for attempt 1, ``...{purpose}-{n}`` for attempt n.
    - latest attempt running → wait for it; exited and ``succeeded`` → reuse it (nothing is
      submitted again);
    - no attempt yet, latest attempt failed, or ``new_attempt`` (a job known to have failed)
      → start attempt n+1, running ``cleanup`` first (cleanups therefore never run for a key
      that already exists).
    Cluster ids printed by the command are appended to ``<control_dir>/<run_key>.jobs``.
    ``round`` sets ``ROUND_NUMBER`` for the command (``RemoteSite.start_detached``).
    ``RemoteTimeout`` propagates when the command outlives ``timeout`` (a retry re-attaches).
    """
    ok = succeeded or (lambda d: d.exit_code == 0)
    base = detached_key(run_key, step, purpose)
    attempts: dict[int, Detached] = {}
    for d in site.list_detached(base):
        n = _attempt_of(base, d.key)
        if n is not None:
            attempts[n] = d
    log = step_logger()
    previous: list[str] = []
    latest_n = max(attempts, default=0)
    latest = attempts.get(latest_n)
    if latest is not None and latest.state == "exited":
        latest = site.detached(latest.key)  # the listing has no output tails
    if latest is not None and latest.state == "running":
        log.info("re-attaching to running %s", latest.key)
        done = wait_detached(site, latest.key, timeout, poll)
        if ok(done) or not new_attempt:
            ids = record_detached_jobs(site, run_key, latest.key)
            return Submission(latest.key, latest_n, False, done, ids)
        latest = done
    if latest is not None and latest.state == "exited" and ok(latest) and not new_attempt:
        log.info("%s already ran (exit %s); not submitting again", latest.key, latest.exit_code)
        ids = record_detached_jobs(site, run_key, latest.key)
        return Submission(latest.key, latest_n, False, latest, ids)
    if latest is not None:
        previous = [attempts[n].key for n in sorted(attempts)]
        log.warning(
            "%s: attempt %d %s; starting attempt %d",
            base,
            latest_n,
            "superseded (job known to have failed)" if new_attempt else "failed",
            latest_n + 1,
        )
    n = latest_n + 1
    key = base if n == 1 else validate.job_key(f"{base}-{n}")
    if cleanup:
        res = site.run(cleanup)
        if not res.ok:
            log.warning("cleanup before %s exited %s: %s", key, res.exit_code, res.stderr[:200])
    site.start_detached(key, command, cwd, env=env, round=round)
    done = wait_detached(site, key, timeout, poll)
    ids = record_detached_jobs(site, run_key, key)
    return Submission(key, n, True, done, ids, previous)


def run_detached_once(
    site: RemoteSite,
    key: str,
    command: str,
    cwd: str,
    timeout: float,
    env: bool = True,
    poll: float = 1.0,
    round: str | None = None,
) -> Detached:
    """Start ``command`` detached under ``key`` (or re-attach if it exists) and wait for it.

    A retry of the same flow run therefore never starts the command a second time; it reads
    the result of the first start. Raises ``RemoteTimeout`` when it is still running after
    ``timeout`` seconds (the command keeps running; a later call re-attaches).
    """
    validate.job_key(key)
    started = site.start_detached(key, command, cwd, env=env, round=round)
    if started.state == "exited":
        return started
    return wait_detached(site, key, timeout, poll)


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
        _plain_name(part)
        if part in {".", ".."}:
            raise InvalidValue("relative name", value)
    return value


def apply_job_states(report: PollReport, job_files: Mapping[str, Sequence[str]]) -> PollReport:
    """Fold the batch system's answer into ``report`` (in place; returned for chaining).

    ``job_files``: run → its job file names, as the batch listing names them (a job's line
    is matched to a run by one of these words); runs not in the report may be given too
    (jobs the step also made, e.g. for other dates' hist files): their lines are known and
    then ignored. Sets ``report.job_states[run]``:
    ``running`` (a job of the run idle or running), ``held`` (a job held, none running),
    ``ended`` (none of the run's jobs left in the queue). A queued job of ours that names
    no known job file makes every run without a known state ``running``: it may be theirs.
    A run whose files are all there is complete only once its jobs have ended (an output
    may still be growing). Without a usable answer (no jobs file, query failed) nothing
    changes: the files alone decide, as before.
    """
    batch = report.batch
    if batch is None or not batch.ok:
        return report
    owner = {name: str(r) for r, names in job_files.items() for name in names}
    states: dict[str, str] = dict.fromkeys(
        (str(r) for r in [*report.complete, *report.incomplete]), "ended"
    )
    unknown_active = False
    for job in batch.jobs.values():
        if job.state not in ACTIVE_STATES and job.state != HELD_STATE:
            continue  # completed / removed: leaving the queue
        runs = {owner[w] for w in re.split(r"[\s()/,]+", job.line) if w in owner}
        if not runs:
            unknown_active = True
            continue
        for r in runs & states.keys():  # a known job of a run not waited for: not ours
            if job.state in ACTIVE_STATES:
                states[r] = "running"
            elif states[r] != "running":
                states[r] = "held"
    if unknown_active:
        states = {r: ("running" if st == "ended" else st) for r, st in states.items()}
    by_key = {str(r): r for r in [*report.complete, *report.incomplete]}
    report.job_states = {by_key[r]: st for r, st in states.items()}
    still = [r for r in report.complete if states.get(str(r)) != "ended"]
    if still:
        report.complete = [r for r in report.complete if r not in still]
        report.incomplete = sorted([*report.incomplete, *still], key=str)
    return report


def run_failures(
    report: PollReport, end_markers: Mapping[str, Sequence[str]] | None = None
) -> dict[str, str]:
    """Runs known to have failed (crashed), with a reason: run key (str) → text.

    With the batch system's job states (``apply_job_states``): a run failed when its jobs
    have ended (none left in the queue) and it is still incomplete: a failure line in its
    logs, or outputs missing or empty. A run whose jobs are queued, running or held has not
    failed, whatever its files show (logs may be written when a job starts).

    Without them (files alone): a failure line in the logs (``report.failed``) or, given
    ``end_markers`` (names whose presence means every job of the run ended, e.g. the batch
    logs), all of them present while the run is still incomplete.
    """
    present = {str(k): v for k, v in report.present.items()}
    missing = {str(k): v for k, v in report.missing.items()}
    empty = {str(k): v for k, v in report.empty.items()}
    lines = {str(run): line for run, line in report.failed.items()}

    def without_output(r: str) -> str:
        gone = [*missing.get(r, []), *(f"{n} (empty)" for n in empty.get(r, []))]
        return "job ended without output: " + ", ".join(gone or ["?"])

    if report.job_states:
        states = {str(k): v for k, v in report.job_states.items()}
        return {
            str(run): lines.get(str(run)) or without_output(str(run))
            for run in report.incomplete
            if states.get(str(run)) == "ended"
        }
    out = dict(lines)
    if not end_markers:
        return out
    for run in report.incomplete:
        r = str(run)
        markers = end_markers.get(r)
        if r in out or not markers:
            continue
        have = present.get(r, {})
        if all(m in have for m in markers):
            out[r] = without_output(r)
    return out


def held_runs(report: PollReport) -> list[str]:
    """Incomplete runs whose jobs the batch system holds (and none of them runs)."""
    states = {str(k): v for k, v in report.job_states.items()}
    return [str(r) for r in report.incomplete if states.get(str(r)) == "held"]


def running_runs(report: PollReport) -> list[str]:
    """Incomplete runs with a job still queued or running (by the batch system's word)."""
    states = {str(k): v for k, v in report.job_states.items()}
    return [str(r) for r in report.incomplete if states.get(str(r)) == "running"]


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
    from steps.remote.polling import relative_name

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


def wait_for_outputs(
    site: RemoteSite,
    directory: str,
    expected: Mapping[str, list[str]],
    *,
    anomalies: Sequence[str] = (),
    failure_logs: Mapping[str, list[str]] | None = None,
    max_wait_minutes: float,
    poll_seconds: float,
    stop_on_anomaly: bool = True,
    stop_when_only_failed: bool = True,
    end_markers: Mapping[str, Sequence[str]] | None = None,
    tree: bool = False,
    jobs_file: str | None = None,
    job_files: Mapping[str, Sequence[str]] | None = None,
) -> tuple[PollReport, bool]:
    """Poll all runs with one remote command per cycle until complete or the limit passes.

    Returns ``(last report, timed_out)``. It returns early, with ``timed_out`` False, when an
    anomaly file appears (``stop_on_anomaly``) or when every incomplete run is known to have
    failed (``run_failures``) or to be held by the batch system, in two consecutive cycles —
    nothing left to wait for (``stop_when_only_failed``). ``max_wait_minutes=0`` polls
    exactly once. ``tree=True`` polls with ``poll_tree`` (names in sub-directories).
    ``jobs_file`` + ``job_files`` (run → job file names): the same command asks the batch
    system for the jobs' states (``apply_job_states``).
    """
    log = step_logger()
    deadline = time.monotonic() + max(0.0, max_wait_minutes) * 60.0
    total = len(expected)
    last_done = -1
    was_all_failed = False
    warned_batch = False
    while True:
        report = poll_outputs(
            site,
            directory,
            expected,
            anomalies=anomalies,
            failure_logs=failure_logs,
            tree=tree,
            jobs_file=jobs_file,
            job_files=job_files,
        )
        if report.batch is not None and not report.batch.ok and not warned_batch:
            log.warning("batch query failed (%s): judging by files only", report.batch.error)
            warned_batch = True
        done = len(report.complete)
        if done != last_done:
            log.info("%d/%d runs complete in %s", done, total, directory)
            last_done = done
        if not report.incomplete:
            return report, False
        if stop_on_anomaly and report.anomalies:
            log.warning("anomaly in %s: %s", directory, ", ".join(report.anomalies))
            return report, False
        if stop_when_only_failed:
            failures = run_failures(report, end_markers)
            ended = set(failures) | set(held_runs(report))
            all_failed = all(str(r) in ended for r in report.incomplete)
            if all_failed and was_all_failed:
                log.warning("runs failed in %s: %s", directory, failures)
                return report, False
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
            return report, True
        pause = min(poll_seconds, remaining)
        if was_all_failed:  # confirm a failure quickly instead of after a full poll period
            pause = min(pause, 1.0)
        time.sleep(pause)


def poll_outputs(
    site: RemoteSite,
    directory: str,
    expected: Mapping[str, Sequence[str]],
    *,
    anomalies: Sequence[str] = (),
    failure_logs: Mapping[str, Sequence[str]] | None = None,
    tree: bool = False,
    jobs_file: str | None = None,
    job_files: Mapping[str, Sequence[str]] | None = None,
) -> PollReport:
    """One poll (ONE remote command): files, failure lines and, with ``jobs_file``, the
    batch system's job states folded in (``apply_job_states``)."""
    poll = partial(poll_tree, site) if tree else site.poll_files
    report = poll(
        directory,
        {k: list(v) for k, v in expected.items()},
        anomalies=list(anomalies),
        failure_logs={k: list(v) for k, v in failure_logs.items()} if failure_logs else None,
        jobs_file=jobs_file,
    )
    if jobs_file and job_files is not None:
        apply_job_states(report, job_files)
    return report


# --------------------------------------------------------------------------- PDFs and files


def _plain_name(value: str) -> str:
    """A file name without glob characters (explicit lists must not expand)."""
    validate.file_name(value)
    if not PLAIN_NAME_RE.match(value):
        raise InvalidValue("file name", value)
    return value


def _pdf_name(value: str) -> str:
    name = value if value.endswith(".pdf") else f"{value}.pdf"
    return _plain_name(name)


def merge_png_sets(
    site: RemoteSite,
    directory: str,
    sets: Sequence[tuple[Sequence[str], str]],
    timeout: float = MERGE_TIMEOUT,
) -> CommandResult:
    """Run the SL6-container ``convert`` of spec steps-0-2 §3 once for several PDFs.

    Each set is ``(png names in directory, pdf name)``; the PDF gets one page per PNG in the
    given order. Old PDFs of the same names are removed first, so a failed convert cannot
    leave a stale PDF that looks fresh. The result's exit code is that of the first failing
    convert (the converts are chained with ``&&``), else 0.
    """
    if not sets:
        raise ValueError("merge_png_sets needs at least one (pngs, pdf) set")
    lines: list[str] = []
    pdfs: list[str] = []
    for pngs, pdf in sets:
        if not pngs:
            raise ValueError(f"no PNG to merge into {pdf!r}")
        names = " ".join(q(_plain_name(p)) for p in pngs)
        pdf_file = _pdf_name(pdf)
        pdfs.append(q(pdf_file))
        lines.append(f"convert {names} {q(pdf_file)}")
    inner = " && \\\n".join(lines)
    container = qpath(site.settings.container_cmd)
    cmd = (
        f"cd {qpath(directory)} && rm -f -- {' '.join(pdfs)} && "
        f"{container} shell SL6 << 'EOF'\n{inner}\nexit\nEOF"
    )
    return site.run(cmd, timeout=timeout)


def merge_pngs(
    site: RemoteSite,
    directory: str,
    pngs: Sequence[str],
    pdf_name: str,
    timeout: float = MERGE_TIMEOUT,
) -> CommandResult:
    """Merge ``pngs`` (names in ``directory``) into ``directory/pdf_name`` in the container."""
    return merge_png_sets(site, directory, [(pngs, pdf_name)], timeout=timeout)


def download_path(site: RemoteSite, run_key: str, local_name: str) -> Path:
    """Where a step's download goes: the run's folder (``steps.download_folders``) / name."""
    root = Path(site.settings.downloads_dir)
    return download_folders.folder(root, validate.job_key(run_key)) / _plain_name(local_name)


def download_pdf(
    site: RemoteSite, remote_path: str, local_path: Path, run: int | None = None
) -> FileRecord:
    """Download with sha256 verification (``DownloadError`` on failure) and describe it."""
    local_path.parent.mkdir(parents=True, exist_ok=True)
    facts = site.download(validate.path(remote_path), local_path)
    return FileRecord(
        path=remote_path,
        size=facts.size,
        sha256=facts.sha256,
        content_type=content_type(remote_path),
        run=run,
        role="download",
        local_path=str(local_path),
    )


def merge_and_download(
    step: str,
    site: RemoteSite,
    *,
    directory: str,
    pngs: Sequence[tuple[int | None, str]],
    pdf_name: str,
    local_name: str,
    run_key: str,
    merge_code: int,
    download_code: int,
    timeout: float = MERGE_TIMEOUT,
    **fields: Any,
) -> StepResult:
    """The whole "merge this date's PNGs into a PDF and download it" step (1.4, 2.5, ...).

    ``pngs`` are ``(run, name in directory)`` in page order. A failed ``convert`` or a missing
    PDF fails with ``merge_code`` (data lists missing PNGs); a download that still fails after
    the SSH layer's retries fails with ``download_code`` (``manual`` for the required reports,
    steps/errors.py REQUIRED_DOWNLOAD_CODES: the operator retries or aborts; the remote PDF is
    recorded).
    ``fields`` (``date``, ``round`` ...) go into the result. ONE ``file_facts`` call records
    the PNGs (role verified) and the remote PDF (role pdf).
    """
    pdf_file = _pdf_name(pdf_name)
    pdf_remote = f"{directory.rstrip('/')}/{pdf_file}"
    res = merge_pngs(site, directory, [name for _, name in pngs], pdf_file, timeout=timeout)
    specs = [FileSpec(f"{directory.rstrip('/')}/{n}", run, "verified") for run, n in pngs]
    records = file_records(site, [*specs, FileSpec(pdf_remote, None, "pdf")])
    have = {r.path: r for r in records}
    missing_pngs = [s.path.rsplit("/", 1)[-1] for s in specs if s.path not in have]
    pdf = have.get(pdf_remote)
    data: dict[str, Any] = {"pdf_remote_path": pdf_remote, "pages": len(pngs)}
    if not res.ok or pdf is None or pdf.size == 0 or missing_pngs:
        detail = (res.stderr or res.stdout).strip()[-300:]
        fail(
            step,
            merge_code,
            f"merging {len(pngs)} PNGs into {pdf_file} failed (exit {res.exit_code})"
            + (f"; missing PNGs: {', '.join(missing_pngs)}" if missing_pngs else "")
            + (f": {detail}" if detail else ""),
            files=records,
            data={**data, "missing_pngs": missing_pngs, "exit_code": res.exit_code},
            **fields,
        )
    local = download_path(site, run_key, local_name)
    try:
        downloaded = download_pdf(site, pdf_remote, local)
    except DownloadError as exc:
        fail(
            step,
            download_code,
            f"{pdf_file} built on the remote, download failed: {exc}",
            files=records,
            data={**data, "download_error": str(exc)},
            **fields,
        )
    return StepResult(
        step=step,
        message=f"{pdf_file} ({len(pngs)} pages) built and downloaded to {local}",
        files=[*records, downloaded],
        data={**data, "pdf_local_path": str(local)},
        **fields,
    )


_CONTENT_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".bosslog": "text/plain",
    ".bosserr": "text/plain",
    ".out": "text/plain",
    ".err": "text/plain",
    ".dat": "text/plain",
    ".root": "application/root",
}


def content_type(path: str) -> str:
    """Content type by extension; anything unknown is ``application/octet-stream``."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot <= 0:
        return "application/octet-stream"
    return _CONTENT_TYPES.get(name[dot:].lower(), "application/octet-stream")


class FileSpec(NamedTuple):
    """A remote file to describe: its path, the run it belongs to, its role."""

    path: str
    run: int | None = None
    role: str = "output"


def file_records(
    site: RemoteSite, specs: Iterable[FileSpec | tuple[Any, ...] | str]
) -> list[FileRecord]:
    """FileRecords for the files that exist, from ONE ``file_facts`` call (order kept).

    Files that do not exist are skipped; compare the result with what you expected.
    """
    items = [_as_spec(s) for s in specs]
    if not items:
        return []
    facts = site.file_facts([validate.path(s.path) for s in items])
    records: list[FileRecord] = []
    for s in items:
        f = facts.get(s.path)
        if f is None:
            continue
        records.append(
            FileRecord(
                path=s.path,
                size=f.size,
                sha256=f.sha256,
                content_type=content_type(s.path),
                run=s.run,
                role=s.role,  # type: ignore[arg-type]
            )
        )
    return records


def _as_spec(value: FileSpec | tuple[Any, ...] | str) -> FileSpec:
    if isinstance(value, FileSpec):
        return value
    if isinstance(value, str):
        return FileSpec(value)
    return FileSpec(*value)
