"""Steps 3.1 – 3.2: search the 50 Hz peaks, then collect the windows into ``window.dat``.

Remote effects are the legacy ones (spec steps-3-6.md §2–3): in ``search_peak`` the cleanup
``rm -f shield* run*``, ``./genJob.sh`` (one ``hep_sub`` job per hist file), one
``shield_run{run}.txt`` per run; then ``./add.sh`` appends them to ``window.dat`` and the exact
``sed '/^[0-9]\\+$/d'`` drops the lines holding only a run number. Not reproduced: the
endless interactive genJob, the resubmission of everything on a retry, an empty shield file
counting as done (the C++ leaves one on input errors, §13.10), the timeout reported as 3100,
and the duplicate lines a re-run appended to ``window.dat``.
"""

from __future__ import annotations

from typing import Any

from steps.batch_stage import JobStage, run_stage
from steps.cumulative import append_with_script, dedupe_command, read_lines
from steps.declare import declare
from steps.file_records import FileSpec, file_records
from steps.remote.site import RemoteSite
from steps.remote.validate import qpath
from steps.results import StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail, step_logger

MIN = 60.0

SEARCH_PEAK = JobStage(
    step="3.1",
    directory=lambda p: p.search_peak,
    cleanup="rm -f shield* run*",
    job_file="run_{run}_3.txt",
    outputs=("shield_run{run}.txt",),
    optional_outputs=("run{run}.root",),
    genjob_code=3100,
    no_job_files_code=3103,
    no_job_files_skip_code=3103,
    timeout_code=3105,
)


# --------------------------------------------------------------------------- 3.1


def search_peak_jobs(
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
    """Step 3.1: submit the search-peak jobs once and wait for a non-empty shield file per run."""
    return run_stage(
        SEARCH_PEAK,
        site,
        date=date,
        round=round,
        run_key=run_key,
        submit_job=submit_job,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )


# --------------------------------------------------------------------------- 3.2


def run_add_script(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    poll_seconds: float = 30,
    script_timeout_minutes: float = 10,
) -> StepResult:
    """Step 3.2: ``./add.sh`` (once: skipped when this date's lines are in window.dat already),
    then the legacy ``sed`` clean of window.dat. Failures are ``continue`` codes (WARNING)."""
    step = "3.2"
    runs = check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).search_peak
    base: dict[str, Any] = {"date": date, "round": round}
    log = step_logger()
    names = [f"shield_run{r}.txt" for r in runs]
    try:
        lines = read_lines(site, directory, names, "window.dat")
    except FileNotFoundError:
        fail(step, 3200, f"{directory} does not exist", **base)
    missing = sorted(r for r, n in zip(runs, names, strict=True) if lines.per_file[n] is None)
    mine = lines.mine
    data: dict[str, Any] = {
        "shield_runs_missing": missing,
        "window_lines_of_date": mine,
        "window_lines_before": len(lines.target or []),
        # parsed here, where the file is read: the physics summary reads these numbers
        "windows": lines.windows(),
    }
    if len(missing) == len(runs):
        fail(
            step,
            3200,
            f"no shield_run{{run}}.txt of {date} in search_peak (run step 3.1 first)",
            runs_incomplete=missing,
            data=data,
            **base,
        )
    already = lines.all_present
    data["already_present"] = already
    if already:
        log.info("3.2: the %d window lines of %s are already in window.dat", len(mine), date)
    else:
        append_with_script(
            site,
            step,
            "add.sh",
            data,
            code=3200,
            run_key=run_key,
            directory=directory,
            timeout=script_timeout_minutes * MIN,
            poll_seconds=poll_seconds,
            **base,
        )
    clean = (
        f"cd {qpath(directory)} || exit 3; "
        "sed '/^[0-9]\\+$/d' window.dat > window.dat.tmp && mv window.dat.tmp window.dat "
        "|| exit 4; "
        f"{dedupe_command(names, 'window.dat')}; wc -l < window.dat"
    )
    res = site.run(clean)
    if not res.ok:
        fail(
            step,
            3202,
            f"cleaning window.dat failed (exit {res.exit_code}): {res.stderr.strip()[-300:]}",
            data=data,
            **base,
        )
    data["window_lines_after"] = int(res.stdout.split()[-1]) if res.stdout.split() else 0
    files = file_records(site, [FileSpec(f"{directory}/window.dat", None, "output")])
    done = [r for r in runs if r not in missing]
    return StepResult(
        step=step,
        message=(
            f"window.dat already held the {len(mine)} window lines of {date}; cleaned"
            if already
            else f"add.sh appended the shield files; window.dat cleaned ({len(mine)} window lines"
            f" of {date})"
        ),
        runs_complete=done,
        runs_incomplete=missing,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- tasks

step3_1 = declare(
    "step3_1",
    "3.1",
    "Search the 50 Hz peaks (hep_sub), wait for the shield files",
    search_peak_jobs,
)
step3_2 = declare(
    "step3_2", "3.2", "add.sh, then drop the bare run-number lines of window.dat", run_add_script
)
