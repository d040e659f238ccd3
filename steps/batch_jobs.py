"""Submitting batch jobs once per flow run: detached commands, attempts, recorded cluster ids.

Why its own module: a retry of a flow run must never submit the same jobs twice (spec
steps.md rule 3); every submitting command therefore runs detached under a key of the run,
is re-attached on a retry, and its cluster ids are recorded for the waits to ask about.

- ``detached_key(run_key, step, purpose) -> str`` — validated key ``"{run_key}.{step}.{purpose}"``.
- ``submit_once(site, *, run_key, step, purpose, command, cwd, timeout, cleanup=None,
  succeeded=None, new_attempt=False, env=True, poll=1.0, round=None) -> Submission`` — the
  idempotent submission rule: start attempt 1 (after ``cleanup``), re-attach on a retry, start
  attempt n+1 only when the last attempt failed or ``new_attempt`` (a job known to have
  failed); records cluster ids. ``round`` exports its ``ROUND_NUMBER`` after the env script
  (the site's script hard-codes 18); every step passes the round it runs for.
- ``resubmit_runs(site, failed, *, run_key, step, command, cwd, cleanup, timeout, round,
  poll=1.0) -> [(run, reason, Submission)]`` — a retry's resubmission of the runs known to
  have failed, one job each (key ``{run_key}.{step}.resub-{run}``), after their cleanup.
- ``exit_failure(what, detached, stdout_too=True) -> str`` — "``{what}`` failed (exit n):
  <tail>", the message of a script that failed.
- ``genjob_ok(detached) -> bool`` — a ``genJob.sh`` finished (exit 0 and its last word DONE).
- ``submit_genjob(site, step, *, run_key, command, cwd, cleanup, timeout, round, code, what,
  data, fields, poll=1.0, note_previous=False) -> Submission`` — a step's ``genJob.sh``
  through ``submit_once`` (key ``{run_key}.{step}.genjob``), failing with ``code`` unless it
  ended with DONE.
- ``latest_attempt(site, run_key, step, purpose) -> Detached | None`` — newest attempt of
  that ``submit_once`` key family (to decide before starting, e.g. 2.2's already-merged case).
- ``run_detached_once(site, key, command, cwd, timeout, env=True, poll=1.0, round=None)
  -> Detached`` — start (or re-attach to) a detached command and wait for it;
  ``RemoteTimeout`` on overrun; ``round`` as for ``submit_once``.
- ``wait_detached(site, key, timeout, poll=1.0) -> Detached`` — wait with back-off (50 ms
  doubling up to ``poll``); ``RemoteTimeout`` on overrun.
- ``record_jobs(site, run_key, output_text)``, ``record_detached_jobs(site, run_key, key)``
  -> ``list[int]`` — append the cluster ids (never twice) to ``<control_dir>/<run_key>.jobs``.
- ``step_jobs_file(site, run_key, step) -> str`` — ``<control_dir>/<run_key>.<step>.jobs``,
  the cluster ids one step submitted (written by ``record_detached_jobs``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from steps.remote import validate
from steps.remote.errors import RemoteTimeout
from steps.remote.validate import q, qpath
from steps.step_log import fail, step_logger

if TYPE_CHECKING:
    from steps.remote.site import Detached, RemoteSite

__all__ = [
    "Submission",
    "detached_key",
    "exit_failure",
    "genjob_ok",
    "latest_attempt",
    "record_detached_jobs",
    "record_jobs",
    "resubmit_runs",
    "run_detached_once",
    "step_jobs_file",
    "submit_genjob",
    "submit_once",
    "wait_detached",
]

CLUSTER_RE = re.compile(r"submitted to cluster (\d+)")


def detached_key(run_key: str, step: str, purpose: str) -> str:
    """``"{run_key}.{step}.{purpose}"``, validated so it can name a remote control dir."""
    return validate.job_key(f"{validate.job_key(run_key)}.{step}.{purpose}")


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


def resubmit_runs(
    site: RemoteSite,
    failed: Mapping[str, str],
    *,
    run_key: str,
    step: str,
    command: Callable[[int], str],
    cwd: str,
    cleanup: Callable[[int], str],
    timeout: float,
    round: str,
    poll: float = 1.0,
) -> list[tuple[int, str, Submission]]:
    """Submit the job of each failed run (run → reason) again, one by one, as a new attempt
    of ``{run_key}.{step}.resub-{run}`` after its ``cleanup(run)`` removed the stale outputs.

    Why only these: a retry of the flow run must not resubmit jobs that may still run
    (spec steps.md rule 3). Returns ``(run, reason, submission)`` in run order.
    """
    log = step_logger()
    done: list[tuple[int, str, Submission]] = []
    for run in sorted(int(r) for r in failed):
        again = submit_once(
            site,
            run_key=run_key,
            step=step,
            purpose=f"resub-{run}",
            command=command(run),
            cwd=cwd,
            timeout=timeout,
            cleanup=cleanup(run),
            new_attempt=True,
            poll=poll,
            round=round,
        )
        log.warning("run %s had failed (%s): resubmitted as %s", run, failed[str(run)], again.key)
        done.append((run, failed[str(run)], again))
    return done


def exit_failure(what: str, d: Detached, stdout_too: bool = True) -> str:
    """``"{what} failed (exit n): <tail>"``: the last 300 characters of its stderr, or of its
    stdout when stderr is empty and ``stdout_too`` (some steps have always shown stderr
    only)."""
    tail = d.stderr or (d.stdout if stdout_too else "") or ""
    return f"{what} failed (exit {d.exit_code}): {tail.strip()[-300:]}"


def genjob_ok(d: Detached) -> bool:
    """genJob.sh finished: exit 0 and its last word ``DONE`` (its guards exit without it)."""
    return d.state == "exited" and d.exit_code == 0 and "DONE" in (d.stdout or "")


def submit_genjob(
    site: RemoteSite,
    step: str,
    *,
    run_key: str,
    command: str,
    cwd: str,
    cleanup: str,
    timeout: float,
    round: str,
    code: int,
    what: str,
    data: dict[str, Any],
    fields: dict[str, Any],
    poll: float = 1.0,
    note_previous: bool = False,
) -> Submission:
    """Run a step's ``genJob.sh`` once per flow run (``submit_once``, purpose ``genjob``).

    ``data`` gets the key, the attempt and the cluster ids (and, with ``note_previous``, the
    keys of earlier failed attempts). A generator that did not end with DONE fails with
    ``code``: "``{what}`` failed (exit n): <its output's tail>"; ``fields`` (date, round) go
    into that result.
    """
    sub = submit_once(
        site,
        run_key=run_key,
        step=step.replace(".", "_"),
        purpose="genjob",
        command=command,
        cwd=cwd,
        timeout=timeout,
        cleanup=cleanup,
        succeeded=genjob_ok,
        poll=poll,
        round=round,
    )
    data.update(genjob_key=sub.key, genjob_attempt=sub.attempt, job_ids=sub.job_ids)
    if note_previous and sub.previous:
        data["genjob_previous_attempts"] = sub.previous
    if not genjob_ok(sub.detached):
        fail(step, code, exit_failure(what, sub.detached), data=data, **fields)
    return sub
