"""Which runs of a batch wait have failed, are held or still run: files and the batch's word.

Why its own module: the waits (``steps.output_waits``), their failure classification
(``steps.wait_failures``) and the resubmission on a retry all judge a run the same way.

- ``apply_job_states(report, job_files)`` — fold the batch answer into a ``PollReport``
  (``report.job_states``: running / held / ended).
- ``run_failures(report, end_markers=None) -> dict[str, str]`` — runs known to have failed:
  with batch states, incomplete runs whose jobs have all ended; else a failure line in their
  logs, or every end marker present while still incomplete.
- ``held_runs(report)``, ``running_runs(report)`` — incomplete runs by batch state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from steps.remote.polling import ACTIVE_STATES, HELD_STATE, PollReport

__all__ = ["apply_job_states", "held_runs", "run_failures", "running_runs"]


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
