"""One batch-job stage of steps 3.1, 4.1, 5.1 and 6.1: submit once, wait, report per run.

Why one module: the four stages differ only in their directory, their cleanup globs, the
job-file name and the files a finished job leaves; the rules are the same for all of them
(spec steps.md rules 3–5):

- ``genJob.sh`` runs detached, once per flow run (``{run_key}.{step}.genjob``); the legacy
  cleanup runs only before that first start; a retry re-attaches instead of submitting again;
- the runs waited for are THIS date's runs (raw files in ``DATA/{date}``), not whatever
  ``hist*.root`` the generator found (old hist files only add extra jobs, reported as such);
- one poll command per cycle for all runs, with a limit, that also asks the batch system
  (``hep_q``) for the state of the jobs this step submitted; a run is complete when its
  outputs are present and non-empty, its batch log exists without a failure line and none
  of its jobs is left in the queue;
- failures are classified before anything is retried: a run whose job ended without its
  outputs or with a failure line (a crash), a job the batch system holds, and a run without
  a job file are not fixed by retrying: ``manual`` codes with the evidence (the failing log
  lines, the job files found), at once. Only jobs still queued or running at the limit give
  the stage's TIMEOUT code (``retry``), and a retry re-attaches to them;
- a retry resubmits, one by one, only the runs known to have failed (ended without output:
  ``hep_sub`` of that run's job file, key ``{run_key}.{step}.resub-{run}[-n]``), after
  removing their stale outputs; a job still queued or running is never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steps.batch_jobs import Submission, resubmit_runs, step_jobs_file, submit_genjob
from steps.config import SitePaths
from steps.file_records import FileSpec, file_records
from steps.job_states import run_failures
from steps.output_waits import ExpectedOutputs, poll_outputs, wait_for_outputs
from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath
from steps.results import StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail, step_logger
from steps.wait_failures import missing_job_files, require_complete

MIN = 60.0
# Our codes (steps/errors.py ADDED_CODES): jobs that crashed, and runs genJob.sh made no job
# file for where the legacy code says retry (3.1 and 5.1 have manual legacy codes).
CRASH_CODES = {"3.1": 3107, "4.1": 4106, "5.1": 5107, "6.1": 6105}
MISSING_JOB_CODES = {"4.1": 4107, "6.1": 6106}


@dataclass(frozen=True)
class JobStage:
    """What distinguishes one stage; name templates take ``{run}``."""

    step: str  # "3.1"
    directory: Callable[[SitePaths], str]
    cleanup: str  # the legacy cleanup, run in the stage directory (globs, no values)
    job_file: str  # "run_{run}_3.txt"
    outputs: tuple[str, ...]  # required, non-empty
    optional_outputs: tuple[str, ...] = ()  # recorded when present (topup runs only ...)
    genjob_code: int = 0  # genJob.sh failed
    no_job_files_code: int = 0  # no job file for some run after genJob.sh
    no_job_files_skip_code: int = 0  # submit_job=False and no job files
    timeout_code: int = 0  # runs incomplete (timed out or failed)

    @property
    def key_step(self) -> str:
        return self.step.replace(".", "_")

    @property
    def crash_code(self) -> int:
        return CRASH_CODES.get(self.step, self.timeout_code)

    @property
    def missing_job_code(self) -> int:
        """After a successful genJob.sh: a run without job file is for an operator."""
        return MISSING_JOB_CODES.get(self.step, self.no_job_files_code)

    def job(self, run: int) -> str:
        return self.job_file.format(run=run)

    def out_log(self, run: int) -> str:
        return f"{self.job(run)}.out.*"

    def logs(self, run: int) -> list[str]:
        return [f"{self.job(run)}.err.*", f"{self.job(run)}.out.*"]

    def expected(self, run: int) -> list[str]:
        return [*(o.format(run=run) for o in self.outputs), self.out_log(run)]

    def products(self, run: int) -> list[str]:
        return [o.format(run=run) for o in (*self.outputs, *self.optional_outputs)]

    def stale(self, run: int) -> str:
        """What a resubmission of ``run`` removes first: its products and its batch logs."""
        plain = " ".join(q(n) for n in self.products(run))
        return f"{plain} {q(self.job(run) + '.out')}.* {q(self.job(run) + '.err')}.*"

    def job_file_re(self) -> re.Pattern[str]:
        head, tail = self.job_file.split("{run}")
        return re.compile(f"^{re.escape(head)}(\\d+){re.escape(tail)}$")


def _job_files(site: RemoteSite, stage: JobStage, directory: str) -> dict[int, str]:
    """Job files in ``directory`` by run (one ``ls``); empty when the listing fails."""
    res = site.run(f"cd {qpath(directory)} && ls -1")
    if not res.ok:
        return {}
    rx = stage.job_file_re()
    return {int(m.group(1)): m.group(0) for m in map(rx.match, res.stdout.split()) if m}


def run_stage(
    stage: JobStage,
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    submit_job: bool = True,
    wait: bool = True,
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
    genjob_timeout_minutes: float = 30,
) -> StepResult:
    """Submit (once) and wait for the stage's jobs of this date.

    ``wait=False`` returns right after the submission (step 4.1 with ``check=False``).
    """
    step = stage.step
    runs = check_inputs(step, site, round, date, run_key)
    directory = stage.directory(site.paths(round))
    base: dict[str, Any] = {"date": date, "round": round}
    data: dict[str, Any] = {"total_runs": len(runs), "directory": directory}
    poll = max(0.05, min(poll_seconds, 2.0))
    timeout = genjob_timeout_minutes * MIN

    sub: Submission | None = None
    if submit_job:
        sub = submit_genjob(
            site,
            step,
            run_key=run_key,
            command="./genJob.sh",
            cwd=directory,
            cleanup=f"cd {qpath(directory)} && {stage.cleanup}",
            timeout=timeout,
            round=round,
            code=stage.genjob_code,
            what=f"genJob.sh in {directory}",
            data=data,
            poll=poll,
            note_previous=True,
            fields=base,
        )

    found = _job_files(site, stage, directory)
    job_runs = set(found)
    without_job = sorted(set(runs) - job_runs)
    if without_job:
        code = stage.missing_job_code if submit_job else stage.no_job_files_skip_code
        hint = "" if submit_job else " (submit_job=False: submit first)"
        gap = missing_job_files(runs, without_job, {r: [n] for r, n in found.items()})
        fail(
            step,
            code,
            f"no job file {stage.job_file} for runs {without_job} in {directory}{hint}; "
            f"{gap.text or 'is HIST/hist{run}.root there?'}",
            runs_incomplete=without_job,
            data={**data, **gap.data},
            **base,
        )
    extra = sorted(job_runs - set(runs))
    if extra:
        # hist*.root of earlier dates still in HIST (reset not run): their jobs run too.
        step_logger().warning("%s: jobs also for runs not of %s: %s", step, date, extra)
        data["other_runs"] = extra

    if not wait:
        return StepResult(
            step=step,
            message=f"{len(runs)} jobs of {date} submitted; not waited for",
            data=data,
            **base,
        )

    outputs = ExpectedOutputs(
        directory,
        expected={str(r): stage.expected(r) for r in runs},
        failure_logs={str(r): stage.logs(r) for r in runs},
        end_markers={str(r): [stage.out_log(r)] for r in runs},
        jobs_file=step_jobs_file(site, run_key, stage.key_step),
        job_files={str(r): [stage.job(r)] for r in sorted(job_runs | set(runs))},
    )
    if sub is not None and not sub.started:
        failed = run_failures(poll_outputs(site, outputs), outputs.end_markers)
        if failed:
            again = resubmit_runs(
                site,
                failed,
                run_key=run_key,
                step=stage.key_step,
                command=lambda r: f"hep_sub -g offlinerun {q(stage.job(r))}",
                cwd=directory,
                cleanup=lambda r: f"cd {qpath(directory)} && rm -f -- {stage.stale(r)}",
                timeout=timeout,
                round=round,
                poll=poll,
            )
            data["resubmitted"] = [
                {"run": r, "reason": why, "key": resub.key, "job_ids": resub.job_ids}
                for r, why, resub in again
            ]

    waited = wait_for_outputs(
        site, outputs, max_wait_minutes=max_wait_minutes, poll_seconds=poll_seconds
    )
    fields = require_complete(
        site,
        step,
        waited,
        data,
        crash_code=stage.crash_code,
        timeout_code=stage.timeout_code,
        **base,
    )
    files = file_records(
        site,
        [FileSpec(f"{directory}/{n}", r, "output") for r in runs for n in stage.products(r)],
    )
    return StepResult(
        step=step,
        message=f"{len(runs)} runs of {date}: all jobs ended with their outputs",
        files=files,
        data=data,
        **fields,
    )
