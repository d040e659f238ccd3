"""Steps 5.1 – 5.4: ETS-cut jobs, ``add_shield.sh``, tidy ``ets_cut.txt``, the ETS_raw PDF.

Remote effects are the legacy ones (spec steps-3-6.md §6–9): in ``ETS_cut`` the cleanup
``rm -f plot* run*``, ``./genJob.sh`` (one ``hep_sub`` job per hist file) drawing
``run{run}_cut.png`` / ``run{run}_total.png``; ``./add_shield.sh`` appending the
``shield*.txt`` windows to ``ets_cut.txt``; the grep/sort/uniq transformation of §8.5; the
SL6-container ``convert`` into ``mergedd_ETS_raw.pdf``, downloaded as
``mergedd_ETS_raw_{date}.pdf``.

Not reproduced: the endless interactive genJob, the resubmission of everything on a retry,
re-appending this date's windows on a re-run, 5.3 failing for ever when the filter leaves
nothing (grep exit 1) and leaving ``ets_cut_temp.txt`` behind, three separate non-atomic
rewrites, and a PDF of every ``run*.png`` in the directory (possibly a stale one).
"""

from __future__ import annotations

from typing import Any

from prefect import task

from steps.batch_stage import JobStage, run_stage
from steps.common import (
    FileSpec,
    check_inputs,
    fail,
    file_records,
    merge_and_download,
    step_logger,
    submit_once,
)
from steps.cumulative import dedupe_command, read_lines, window_lines
from steps.remote.site import RemoteSite
from steps.remote.validate import qpath
from steps.results import StepResult
from steps.session import open_site

MIN = 60.0

ETS_CUT = JobStage(
    step="5.1",
    directory=lambda p: p.ets_cut,
    cleanup="rm -f plot* run*",
    job_file="plot_ETS_{run}.txt",
    outputs=("run{run}_cut.png", "run{run}_total.png"),
    optional_outputs=("shield{run}.txt", "run{run}.root"),  # only runs with noise windows
    genjob_code=5100,
    no_job_files_code=5103,
    no_job_files_skip_code=5103,
    timeout_code=5104,
)

# Exit codes of the tidy script → dictionary codes (which pass failed).
_TIDY_CODES = {10: 5300, 11: 5300, 20: 5300, 21: 5301, 22: 5302, 23: 5300}
_TIDY_WHY = {
    10: "cannot enter the ETS_cut directory",
    11: "ets_cut.txt does not exist",
    20: "grep of the bare run-number lines failed",
    21: "sort failed",
    22: "uniq failed",
    23: "replacing ets_cut.txt failed",
}


# --------------------------------------------------------------------------- 5.1


def ets_cut_jobs(
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
    """Step 5.1: submit the ETS-cut jobs once; wait for both plots of every run."""
    result, _ = run_stage(
        ETS_CUT,
        site,
        date=date,
        round=round,
        run_key=run_key,
        submit_job=submit_job,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )
    result.data["shield_runs"] = sorted(
        {rec.run for rec in result.files if rec.path.rsplit("/", 1)[-1].startswith("shield")}
        - {None}
    )
    return result


# --------------------------------------------------------------------------- 5.2


def run_add_shield(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    script_timeout_minutes: float = 10,
    poll_seconds: float = 30,
) -> StepResult:
    """Step 5.2: ``./add_shield.sh`` once (skipped when this date's windows are already in
    ets_cut.txt, or when this date has no shield file); failures are 5200 ``continue``."""
    step = "5.2"
    runs = check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).ets_cut
    base: dict[str, Any] = {"date": date, "round": round}
    names = [f"shield{r}.txt" for r in runs]
    try:
        per_file, ets = read_lines(site, directory, names, "ets_cut.txt")
    except FileNotFoundError:
        fail(step, 5200, f"{directory} does not exist", **base)
    with_shield = sorted(r for r, n in zip(runs, names, strict=True) if per_file[n] is not None)
    mine = window_lines(per_file)
    data: dict[str, Any] = {
        "shield_runs": with_shield,
        "ets_lines_of_date": mine,
        "ets_lines_before": len(ets or []),
    }
    if not with_shield:
        # ETS_cut.cpp writes no shield file when it finds no noise region: nothing to add.
        return StepResult(
            step=step,
            message=f"no shield file of {date}: no ETS window to append",
            data={**data, "appended": False},
            **base,
        )
    already = bool(mine) and all(ln in set(ets or []) for ln in mine)
    data["already_present"] = already
    if not already:
        sub = submit_once(
            site,
            run_key=run_key,
            step="5_2",
            purpose="add_shield",
            command="./add_shield.sh",
            cwd=directory,
            timeout=script_timeout_minutes * MIN,
            env=False,
            poll=max(0.05, min(poll_seconds, 2.0)),
        )
        data.update(add_key=sub.key, add_started=sub.started)
        d = sub.detached
        if d.exit_code != 0:
            fail(
                step,
                5200,
                f"add_shield.sh failed (exit {d.exit_code}): "
                f"{(d.stderr or d.stdout or '').strip()[-300:]}",
                data=data,
                **base,
            )
        res = site.run(
            f"cd {qpath(directory)} || exit 3; {dedupe_command(names, 'ets_cut.txt')}; "
            "wc -l < ets_cut.txt"
        )
        if not res.ok:
            fail(
                step,
                5200,
                f"removing repeated lines of {date} from ets_cut.txt failed: {res.stderr[-300:]}",
                data=data,
                **base,
            )
        data["ets_lines_after"] = int(res.stdout.split()[-1]) if res.stdout.split() else 0
    else:
        step_logger().info("5.2: the %d ETS lines of %s are already there", len(mine), date)
    data["appended"] = not already
    files = file_records(site, [FileSpec(f"{directory}/ets_cut.txt", None, "output")])
    return StepResult(
        step=step,
        message=(
            f"ets_cut.txt already held the {len(mine)} window lines of {date}"
            if already
            else f"add_shield.sh appended the shield files of {len(with_shield)} runs"
        ),
        runs_complete=with_shield,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 5.3


def tidy_command(directory: str) -> str:
    """The §8.5 transformation in one command, atomically (temp file + mv).

    grep drops bare run-number lines (exit 1 = nothing left is fine: an empty file), sort by
    the run number, uniq drops adjacent duplicates; byte order (LC_ALL=C) as the spec's
    examples. Exit codes name the failing pass.
    """
    return (
        f"cd {qpath(directory)} || exit 10; test -f ets_cut.txt || exit 11; "
        "export LC_ALL=C; "
        "grep -vE '^[0-9]+$' ets_cut.txt | sort -n -k1,1 | uniq > ets_cut_temp.txt; "
        's=("${PIPESTATUS[@]}"); '
        'if [ "${s[0]}" -gt 1 ]; then rm -f ets_cut_temp.txt; exit 20; fi; '
        'if [ "${s[1]}" -ne 0 ]; then rm -f ets_cut_temp.txt; exit 21; fi; '
        'if [ "${s[2]}" -ne 0 ]; then rm -f ets_cut_temp.txt; exit 22; fi; '
        "mv -f ets_cut_temp.txt ets_cut.txt || exit 23; cat ets_cut.txt"
    )


def tidy_ets_cut(site: RemoteSite, *, date: str, round: str, run_key: str) -> StepResult:
    """Step 5.3: drop bare run-number lines, sort by run, drop repeated lines (idempotent)."""
    step = "5.3"
    check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).ets_cut
    base: dict[str, Any] = {"date": date, "round": round}
    res = site.run(tidy_command(directory))
    if not res.ok:
        code = _TIDY_CODES.get(res.exit_code, 5300)
        why = _TIDY_WHY.get(res.exit_code, f"exit {res.exit_code}")
        fail(step, code, f"tidying ets_cut.txt: {why}: {res.stderr.strip()[-300:]}", **base)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    files = file_records(site, [FileSpec(f"{directory}/ets_cut.txt", None, "output")])
    return StepResult(
        step=step,
        message=f"ets_cut.txt tidied: {len(lines)} window lines",
        files=files,
        data={
            "lines": len(lines),
            "runs": sorted({int(ln.split()[0]) for ln in lines if ln.split()[0].isdigit()}),
            "file_content": res.stdout,
        },
        **base,
    )


# --------------------------------------------------------------------------- 5.4


def merge_ets_raw(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 5.4: ``mergedd_ETS_raw.pdf`` from this date's cut/total plots, downloaded."""
    step = "5.4"
    runs = check_inputs(step, site, round, date, run_key)
    pngs = [(r, name) for r in runs for name in (f"run{r}_cut.png", f"run{r}_total.png")]
    result = merge_and_download(
        step,
        site,
        directory=site.paths(round).ets_cut,
        pngs=pngs,
        pdf_name="mergedd_ETS_raw.pdf",
        local_name=f"mergedd_ETS_raw_{date}.pdf",
        run_key=run_key,
        merge_code=5401,
        download_code=5403,
        timeout=merge_timeout_minutes * MIN,
        date=date,
        round=round,
    )
    result.runs_complete = runs
    return result


# --------------------------------------------------------------------------- tasks


@task(name="step5_1", persist_result=True)
def step5_1(
    date: str,
    round: str,
    run_key: str,
    site: str = "default",
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
    submit_job: bool = True,
    genjob_timeout_minutes: float = 30,
) -> StepResult:
    return ets_cut_jobs(
        open_site(site),
        date=date,
        round=round,
        run_key=run_key,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        submit_job=submit_job,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )


@task(name="step5_2", persist_result=True)
def step5_2(
    date: str,
    round: str,
    run_key: str,
    site: str = "default",
    poll_seconds: float = 30,
    script_timeout_minutes: float = 10,
) -> StepResult:
    return run_add_shield(
        open_site(site),
        date=date,
        round=round,
        run_key=run_key,
        poll_seconds=poll_seconds,
        script_timeout_minutes=script_timeout_minutes,
    )


@task(name="step5_3", persist_result=True)
def step5_3(date: str, round: str, run_key: str, site: str = "default") -> StepResult:
    return tidy_ets_cut(open_site(site), date=date, round=round, run_key=run_key)


@task(name="step5_4", persist_result=True)
def step5_4(
    date: str,
    round: str,
    run_key: str,
    site: str = "default",
    merge_timeout_minutes: float = 10,
) -> StepResult:
    return merge_ets_raw(
        open_site(site),
        date=date,
        round=round,
        run_key=run_key,
        merge_timeout_minutes=merge_timeout_minutes,
    )
