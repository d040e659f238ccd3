"""Steps 2.1 – 2.5: second-pass jobs, merging their ntuples, check plots and their PDF.

Remote effects are the legacy ones (spec steps-0-2.md §9): ``BASE/genJob.sh {date}`` submits
one BOSS job per raw file into ``BASE/{date}/{run}/``; ``mergeHist.sh`` merges each run into
``HIST/hist{run}.root``; ``HIST/01go.sh`` draws ``check{run}.png``; the check plots of this
date are merged into ``mergedd_Hist.pdf``. Not reproduced: a run counted complete after its
first ntuple (every job must have its ntuple, non-empty, its log, no failure), a rerun of
``mergeHist.sh`` after it already ran (it would destroy the merged files), stale PNGs of other
runs counted as this date's, and scripts that die with the SSH session.
"""

from __future__ import annotations

import re
from typing import Any

from steps.batch_jobs import (
    exit_failure,
    latest_attempt,
    step_jobs_file,
    submit_genjob,
    submit_once,
)
from steps.declare import declare
from steps.file_records import FileSpec, file_records
from steps.job_states import run_failures
from steps.output_waits import ExpectedOutputs, poll_outputs, run_fields, wait_for_outputs
from steps.remote.site import FAILURE_REGEX, PollReport, RemoteSite
from steps.remote.validate import q, qpath
from steps.reports import date_pdf
from steps.results import StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail, step_logger
from steps.wait_failures import missing_job_files, require_complete

MIN = 60.0
JOB_PATH_RE = re.compile(r"^\./(\d+)/rec(\d+)_(\d+)$")

Jobs = dict[int, list[int]]  # run -> job ids


def _job(run: int, job_id: int) -> str:
    return f"rec{run}_{job_id}"


def _job_outputs(run: int, job_id: int) -> list[str]:
    """Names (relative to ``BASE/{date}``) a finished second-pass job must leave."""
    return [f"{run}/{_job(run, job_id)}", f"{run}/hist{run}_{job_id}.root", _log(run, job_id)]


def _log(run: int, job_id: int) -> str:
    return f"{run}/{_job(run, job_id)}.bosslog"


def _err(run: int, job_id: int) -> str:
    return f"{run}/{_job(run, job_id)}.bosserr"


def _list_jobs(site: RemoteSite, date_dir: str) -> Jobs | None:
    """Job files ``{run}/rec{run}_{id}`` under ``date_dir`` (one command); None: no dir."""
    cmd = (
        f"test -d {qpath(date_dir)} || exit 3; cd {qpath(date_dir)} && "
        "find . -mindepth 2 -maxdepth 2 -name 'rec*' ! -name '*.*' -print"
    )
    res = site.run(cmd)
    if res.exit_code == 3:
        return None
    if not res.ok:
        fail("2.1", 2104, f"listing the run directories of {date_dir} failed: {res.stderr[:200]}")
    jobs: Jobs = {}
    for line in res.stdout.splitlines():
        m = JOB_PATH_RE.match(line.strip())
        if m and m.group(1) == m.group(2):
            jobs.setdefault(int(m.group(1)), []).append(int(m.group(3)))
    return {r: sorted(ids) for r, ids in sorted(jobs.items())}


def _failed_jobs(
    site: RemoteSite, date_dir: str, report: PollReport, jobs: Jobs, failed_runs: list[int]
) -> dict[tuple[int, int], str]:
    """Which jobs of the failed runs failed: a failure line in their logs (one grep for all),
    or their log present — or, by the batch system's word, the run's jobs all ended — while
    their ntuple is missing or empty."""
    out: dict[tuple[int, int], str] = {}
    if not failed_runs:
        return out
    logs = [p for r in failed_runs for i in jobs[r] for p in (_err(r, i), _log(r, i))]
    res = site.run(
        f"cd {qpath(date_dir)} && grep -lE {q(FAILURE_REGEX)} -- "
        + " ".join(q(p) for p in logs)
        + " 2>/dev/null; exit 0"
    )
    flagged = set(res.stdout.split())
    states = {str(k): v for k, v in report.job_states.items()}
    for r in failed_runs:
        present = report.present.get(str(r), {})
        ended = states.get(str(r)) == "ended"
        for i in jobs[r]:
            hist = f"{r}/hist{r}_{i}.root"
            if _err(r, i) in flagged or _log(r, i) in flagged:
                out[(r, i)] = "failure in its logs"
            elif (ended or _log(r, i) in present) and not present.get(hist):
                out[(r, i)] = "ended without ntuple"
    return out


def _suspect_logs(report: PollReport, run: int, ids: list[int]) -> list[str]:
    """The error logs worth showing for a run: of its jobs without a (non-empty) ntuple, and
    the log with a failure line (the other jobs' ``.bosserr`` hold only harmless warnings)."""
    gone = {*report.missing.get(str(run), []), *report.empty.get(str(run), [])}
    logs = [_err(run, i) for i in ids if f"{run}/hist{run}_{i}.root" in gone]
    failed = report.failed_files.get(str(run))
    if failed and failed not in logs:
        logs.insert(0, failed)
    return logs or [_err(run, i) for i in ids]


# --------------------------------------------------------------------------- 2.1


def second_jobs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
    submit_job: bool = True,
    genjob_timeout_minutes: float = 30,
) -> StepResult:
    """Step 2.1: submit the second-pass jobs (once per run_key) and wait for every ntuple."""
    step = "2.1"
    runs = check_inputs(step, site, round, date, run_key)
    paths = site.paths(round)
    date_dir = f"{paths.base}/{date}"
    base: dict[str, Any] = {"date": date, "round": round}
    data: dict[str, Any] = {"total_runs": len(runs)}
    log = step_logger()

    sub = None
    if submit_job:
        sub = submit_genjob(
            site,
            step,
            run_key=run_key,
            command=f"./genJob.sh {q(date)}",
            cwd=paths.base,
            cleanup=f"rm -rf -- {qpath(date_dir)}",
            timeout=genjob_timeout_minutes * MIN,
            round=round,
            code=2102,
            what=f"genJob.sh {date} in BASE",
            data=data,
            fields=base,
        )

    jobs = _list_jobs(site, date_dir)
    if jobs is None:
        code = 2103 if submit_job else 2105
        fail(step, code, f"BASE/{date} does not exist", data=data, **base)
    without = sorted(set(runs) - set(jobs))
    if without:
        gap = missing_job_files(
            runs, without, {r: [f"{r}/{_job(r, i)}" for i in ids] for r, ids in jobs.items()}
        )
        fail(
            step,
            2105,
            f"no job files for runs {without} in BASE/{date}"
            + (f"; {gap.text}" if gap.text else ""),
            runs_incomplete=without,
            data={**data, "runs_without_jobs": without, **gap.data},
            **base,
        )
    data["jobs"] = sum(len(jobs[r]) for r in runs)
    outputs = ExpectedOutputs(
        date_dir,
        expected={str(r): [n for i in jobs[r] for n in _job_outputs(r, i)] for r in runs},
        failure_logs={str(r): [p for i in jobs[r] for p in (_err(r, i), _log(r, i))] for r in runs},
        end_markers={str(r): [_log(r, i) for i in jobs[r]] for r in runs},
        jobs_file=step_jobs_file(site, run_key, "2_1"),
        job_files={str(r): [_job(r, i) for i in ids] for r, ids in jobs.items()},
        tree=True,
    )

    # A retry of this flow run: resubmit, one by one, only the jobs known to have failed.
    if sub is not None and not sub.started:
        report = poll_outputs(site, outputs)
        failed_runs = sorted(int(r) for r in run_failures(report, outputs.end_markers))
        resubmitted = []
        for (r, i), why in sorted(_failed_jobs(site, date_dir, report, jobs, failed_runs).items()):
            run_dir = f"{date_dir}/{r}"
            again = submit_once(
                site,
                run_key=run_key,
                step="2_1",
                purpose=f"resub-{r}-{i}",
                command=f"boss.condor -g offlinerun {q(_job(r, i))}",
                cwd=run_dir,
                timeout=genjob_timeout_minutes * MIN,
                cleanup=f"cd {qpath(run_dir)} && rm -f -- "
                + " ".join(q(n.split("/", 1)[1]) for n in (_err(r, i), _log(r, i)))
                + f" {q(f'hist{r}_{i}.root')}",
                new_attempt=True,
                round=round,
            )
            log.warning("job %s of run %s had failed (%s): resubmitted as %s", i, r, why, again.key)
            resubmitted.append({"run": r, "job": i, "reason": why, "key": again.key})
        if resubmitted:
            data["resubmitted"] = resubmitted

    waited = wait_for_outputs(
        site, outputs, max_wait_minutes=max_wait_minutes, poll_seconds=poll_seconds
    )
    suspects = {str(r): _suspect_logs(waited.report, r, jobs[r]) for r in runs}
    fields = require_complete(
        site, step, waited, data, crash_code=2108, timeout_code=2106, logs=suspects, **base
    )
    files = file_records(
        site,
        [FileSpec(f"{date_dir}/{r}/hist{r}_{i}.root", r, "output") for r in runs for i in jobs[r]],
    )
    return StepResult(
        step=step,
        message=f"{data['jobs']} ntuples of {len(runs)} runs of {date} complete",
        files=files,
        data=data,
        **fields,
    )


# --------------------------------------------------------------------------- 2.2


def _merge_state(
    site: RemoteSite, date_dir: str, hist: str, runs: list[int]
) -> tuple[set[int], set[int]]:
    """(runs whose parts are still in BASE/{date}/{run}, runs with a non-empty HIST file)."""
    checks = []
    for r in runs:
        checks.append(
            f"[ -s {qpath(f'{hist}/hist{r}.root')} ] && echo '::merged:: {r}'; "
            f"ls -- {qpath(f'{date_dir}/{r}')}/hist{r}_*.root >/dev/null 2>&1 "
            f"&& echo '::parts:: {r}'"
        )
    res = site.run("; ".join(checks) + "; exit 0")
    parts, merged = set(), set()
    for line in res.stdout.splitlines():
        kind, _, run = line.partition(" ")
        if kind == "::parts::":
            parts.add(int(run))
        elif kind == "::merged::":
            merged.add(int(run))
    return parts, merged


def merge_hist(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 30,
) -> StepResult:
    """Step 2.2: run ``mergeHist.sh`` once; skip it when its work is already done.

    ``mergeHist.sh`` deletes the parts and moves the merged files, so it cannot be rerun: with
    every run merged in HIST and no parts left it is not started again; with a mix it fails
    with 72 (data inconsistent, manual). Afterwards every run's ``HIST/hist{run}.root`` must
    exist and be non-empty.
    """
    step = "2.2"
    runs = check_inputs(step, site, round, date, run_key)
    paths = site.paths(round)
    date_dir = f"{paths.base}/{date}"
    base: dict[str, Any] = {"date": date, "round": round}
    data: dict[str, Any] = {}
    latest = latest_attempt(site, run_key, "2_2", "mergehist")
    would_start = latest is None or (latest.state == "exited" and latest.exit_code != 0)
    skipped = False
    if would_start:
        parts, merged = _merge_state(site, date_dir, paths.hist, runs)
        if not parts and merged == set(runs):
            skipped = True
            step_logger().info(
                "all %d runs already merged in HIST; mergeHist.sh not rerun", len(runs)
            )
        elif parts != set(runs):
            fail(
                step,
                72,
                "cannot run mergeHist.sh safely: parts present for runs "
                f"{sorted(parts)}, merged for runs {sorted(merged)} of {runs}",
                data={"runs_with_parts": sorted(parts), "runs_merged": sorted(merged)},
                **base,
            )
    if not skipped:
        sub = submit_once(
            site,
            run_key=run_key,
            step="2_2",
            purpose="mergehist",
            command="./mergeHist.sh",
            cwd=date_dir,
            timeout=merge_timeout_minutes * MIN,
            round=round,
        )
        d = sub.detached
        data.update(key=sub.key, attempt=sub.attempt, output=(d.stdout or "")[-2000:])
        if d.exit_code != 0:
            fail(step, 2200, exit_failure("mergeHist.sh", d, stdout_too=False), data=data, **base)
    data["skipped"] = skipped
    files = file_records(site, [FileSpec(f"{paths.hist}/hist{r}.root", r, "output") for r in runs])
    sizes = {rec.run: rec.size for rec in files}
    bad = [r for r in runs if not sizes.get(r)]
    if bad:
        fail(
            step,
            2200,
            f"HIST/hist{{run}}.root missing or empty after mergeHist.sh for runs {bad}",
            files=files,
            runs_complete=[r for r in runs if r not in bad],
            runs_incomplete=bad,
            data=data,
            **base,
        )
    return StepResult(
        step=step,
        message=(
            f"{len(runs)} runs merged into HIST"
            + (" (already merged; mergeHist.sh not rerun)" if skipped else "")
        ),
        runs_complete=runs,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 2.3


def _runs_without_hist(site: RemoteSite, hist: str, runs: list[int]) -> list[int]:
    """Runs whose ``HIST/hist{run}.root`` (2.2's output) is missing or empty: one poll."""
    probe = site.poll_files(hist, {str(r): [f"hist{r}.root"] for r in runs})
    return sorted(int(r) for r in probe.incomplete)


def draw_pngs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    draw_timeout_minutes: float = 30,
) -> StepResult:
    """Step 2.3: run ``HIST/01go.sh`` detached (once per run_key); 2.4 waits for the PNGs.

    On the first start the check PNGs of this date's runs are removed, so 2.4 cannot mistake
    a stale plot for a new one.
    """
    step = "2.3"
    runs = check_inputs(step, site, round, date, run_key)
    hist = site.paths(round).hist
    base: dict[str, Any] = {"date": date, "round": round}
    no_hist = _runs_without_hist(site, hist, runs)
    if no_hist:
        fail(
            step,
            2300,
            f"HIST/hist{{run}}.root missing or empty for runs {no_hist}: run step 2.2 first",
            runs_incomplete=no_hist,
            **base,
        )
    stale = " ".join(q(f"check{r}.png") for r in runs)
    sub = submit_once(
        site,
        run_key=run_key,
        step="2_3",
        purpose="draw",
        command="./01go.sh",
        cwd=hist,
        timeout=draw_timeout_minutes * MIN,
        cleanup=f"cd {qpath(hist)} && rm -f -- {stale}",
        round=round,
    )
    d = sub.detached
    data = {"key": sub.key, "attempt": sub.attempt, "output": (d.stdout or "")[-2000:]}
    if d.exit_code != 0:
        fail(step, 2300, exit_failure("01go.sh", d, stdout_too=False), data=data, **base)
    return StepResult(
        step=step,
        message=f"01go.sh ran in HIST ({'started' if sub.started else 're-attached'})",
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 2.4


def wait_check_pngs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
) -> StepResult:
    """Step 2.4: wait for ``HIST/check{run}.png`` of THIS date's runs, by name."""
    step = "2.4"
    runs = check_inputs(step, site, round, date, run_key)
    hist = site.paths(round).hist
    base: dict[str, Any] = {"date": date, "round": round}
    no_hist = _runs_without_hist(site, hist, runs)
    if no_hist:
        fail(
            step,
            2401,
            f"no HIST/hist{{run}}.root for runs {no_hist}: their PNGs cannot appear",
            runs_incomplete=no_hist,
            **base,
        )
    waited = wait_for_outputs(
        site,
        ExpectedOutputs(hist, {str(r): [f"check{r}.png"] for r in runs}),
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        stop_when_only_failed=False,
    )
    fields = run_fields(waited.report, base)
    incomplete = fields["runs_incomplete"]
    if incomplete:
        fail(
            step,
            2402,
            f"check PNGs of {len(incomplete)}/{len(runs)} runs not there within "
            f"{max_wait_minutes} min: {incomplete}",
            data={"timed_out": waited.timed_out},
            **fields,
        )
    files = file_records(site, [FileSpec(f"{hist}/check{r}.png", r, "verified") for r in runs])
    return StepResult(
        step=step,
        message=f"all {len(runs)} check PNGs of {date} present",
        files=files,
        **fields,
    )


# --------------------------------------------------------------------------- 2.5


def hist_pdf(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 2.5: merge this date's check PNGs into ``mergedd_Hist.pdf`` and download it."""
    return date_pdf(
        "2.5",
        site,
        date=date,
        round=round,
        run_key=run_key,
        directory=lambda p: p.hist,
        pngs=lambda r: [f"check{r}.png"],
        pdf_name="mergedd_Hist.pdf",
        merge_code=2501,
        download_code=2503,
        merge_timeout_minutes=merge_timeout_minutes,
        runs_when_failed=True,
    )


# --------------------------------------------------------------------------- tasks

step2_1 = declare("step2_1", "2.1", "Second-pass jobs per run, wait for the ntuples", second_jobs)
step2_2 = declare(
    "step2_2", "2.2", "Merge the ntuples (mergeHist.sh) into hist{run}.root", merge_hist
)
step2_3 = declare("step2_3", "2.3", "Draw the check plots (01go.sh)", draw_pngs)
step2_4 = declare("step2_4", "2.4", "Wait for check{run}.png of every run", wait_check_pngs)
step2_5 = declare("step2_5", "2.5", "Merge the check plots into a PDF and download it", hist_pdf)
