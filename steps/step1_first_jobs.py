"""Steps 1.1 – 1.4: first-pass jobs, filing their outputs, the IST check, the interval PDF.

Remote effects are the legacy ones (spec steps-0-2.md §8): ``INJ/genJob.sh {date}`` submits
one BOSS job per run into ``INJ/{date}``; 1.2 moves the IST ROOT files to ``calibConst`` and
the interval plots to ``Interval_plot``; 1.3 appends ``{run} 15000000`` to ``INJ/interval.txt``;
1.4 merges the interval plots into ``mergedd_IST.pdf``. The legacy defects are not reproduced:
inputs are validated and quoted, genJob runs detached and is re-attached on a retry, the wait
polls all runs in one command (files and the batch system's job states) and also catches
failed or empty jobs and the anomaly file; crashed jobs (1114) and runs without a job file
(1115) go to an operator at once, only jobs still running at the limit are retried (1111);
1.2 and 1.3 are idempotent, and 1.4 merges only this date's plots.
"""

from __future__ import annotations

import re
from typing import Any

from steps.batch_jobs import resubmit_runs, step_jobs_file, submit_genjob
from steps.cumulative import append_run_lines
from steps.declare import declare
from steps.file_records import FileSpec, file_records
from steps.job_states import run_failures
from steps.output_waits import ExpectedOutputs, poll_outputs, run_fields, wait_for_outputs
from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath
from steps.reports import date_pdf
from steps.results import StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail, step_logger
from steps.wait_failures import missing_job_files, require_complete

IST_VALUE = 15000000
IST_FIELDS = ("interval_From_DB", "interval_before_sorting", "interval_after_sorting")
ANOMALY_FILE = "Interval_run0.png"
JOB_FILE_RE = re.compile(r"^rec(\d+)_1\.txt$")
IST_LINE_RE = re.compile(
    r"(interval_From_DB|interval_before_sorting|interval_after_sorting)\s+(-?\d+)"
)
MIN = 60.0


def _job_file(run: int) -> str:
    return f"rec{run}_1.txt"


def _logs(run: int) -> list[str]:
    return [f"{_job_file(run)}.bosserr", f"{_job_file(run)}.bosslog"]


def _ist_root(site: RemoteSite, run: int) -> str:
    return f"InjSigTime_00{run}_{site.settings.bosse}.root"


def _outputs(site: RemoteSite, run: int) -> list[str]:
    """The six files a finished first-pass job leaves in ``INJ/{date}``."""
    return [
        _job_file(run),
        *_logs(run),
        _ist_root(site, run),
        f"Interval_run{run}.png",
        f"Interval_run{run}.txt",
    ]


def _list_job_runs(site: RemoteSite, date_dir: str) -> dict[int, str] | None:
    """Job files ``rec{run}_1.txt`` in ``date_dir`` by run (one ``ls``); None: no dir."""
    res = site.run(f"test -d {qpath(date_dir)} || exit 3; ls -1 -- {qpath(date_dir)}")
    if res.exit_code == 3:
        return None
    if not res.ok:
        fail("1.1", 1108, f"listing {date_dir} failed: {res.stderr.strip()[:200]}")
    found: dict[int, str] = {}
    for line in res.stdout.splitlines():
        m = JOB_FILE_RE.match(line.strip())
        if m:
            found[int(m.group(1))] = m.group(0)
    return dict(sorted(found.items()))


# --------------------------------------------------------------------------- 1.1


def first_jobs(
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
    """Step 1.1: submit the first-pass jobs (once per run_key) and wait for 6 files per run."""
    step = "1.1"
    runs = check_inputs(step, site, round, date, run_key)
    paths = site.paths(round)
    date_dir = f"{paths.inj}/{date}"
    base: dict[str, Any] = {"date": date, "round": round}
    data: dict[str, Any] = {"total_runs": len(runs)}

    sub = None
    if submit_job:
        sub = submit_genjob(
            site,
            step,
            run_key=run_key,
            command=f"./genJob.sh {q(date)}",
            cwd=paths.inj,
            cleanup=f"rm -rf -- {qpath(date_dir)}",
            timeout=genjob_timeout_minutes * MIN,
            round=round,
            code=1105,
            what=f"genJob.sh {date}",
            data=data,
            fields=base,
        )

    job_runs = _list_job_runs(site, date_dir)
    if job_runs is None:
        if submit_job:
            fail(step, 1106, f"INJ/{date} not created by genJob.sh", data=data, **base)
        fail(step, 1109, f"submit_job=False and no INJ/{date} with job files", data=data, **base)
    without_job = sorted(set(runs) - set(job_runs))
    if without_job:
        # genJob.sh succeeded yet made no job file for these runs (e.g. a 6-digit run cut to
        # 5 digits by its ${name:6:5}): waiting or retrying cannot change that.
        gap = missing_job_files(runs, without_job, {r: [n] for r, n in job_runs.items()})
        fail(
            step,
            1115 if submit_job else 1109,
            f"no job file rec{{run}}_1.txt for runs {without_job} in INJ/{date}"
            + (f"; {gap.text}" if gap.text else ""),
            runs_incomplete=without_job,
            data={**data, **gap.data},
            **base,
        )

    logs = {str(r): _logs(r) for r in runs}
    outputs = ExpectedOutputs(
        date_dir,
        expected={str(r): _outputs(site, r) for r in runs},
        failure_logs=logs,
        end_markers=logs,
        jobs_file=step_jobs_file(site, run_key, "1_1"),
        job_files={str(r): [_job_file(r)] for r in sorted(set(runs) | set(job_runs))},
        anomalies=[ANOMALY_FILE],
    )

    # A retry of this flow run: resubmit, one by one, only the jobs known to have failed.
    if sub is not None and not sub.started:
        failed = run_failures(poll_outputs(site, outputs), logs)
        resubmitted = resubmit_runs(
            site,
            failed,
            run_key=run_key,
            step="1_1",
            command=lambda r: f"boss.condor -g offlinerun {q(_job_file(r))}",
            cwd=date_dir,
            cleanup=lambda r: (
                f"cd {qpath(date_dir)} && rm -f -- " + " ".join(q(n) for n in _outputs(site, r)[1:])
            ),
            timeout=genjob_timeout_minutes * MIN,
            round=round,
        )
        if resubmitted:
            data["resubmitted"] = [
                {"run": r, "reason": why, "key": resub.key} for r, why, resub in resubmitted
            ]

    waited = wait_for_outputs(
        site, outputs, max_wait_minutes=max_wait_minutes, poll_seconds=poll_seconds
    )
    if waited.report.anomalies:
        fail(
            step,
            1112,
            f"{ANOMALY_FILE} appeared in INJ/{date}: the data of this date look abnormal",
            data={
                **data,
                "anomaly_file": ANOMALY_FILE,
                "requires_manual_intervention": True,
            },
            **run_fields(waited.report, base),
        )
    fields = require_complete(site, step, waited, data, crash_code=1114, timeout_code=1111, **base)
    files = file_records(
        site, [FileSpec(f"{date_dir}/{n}", r, "output") for r in runs for n in _outputs(site, r)]
    )
    return StepResult(
        step=step,
        message=f"{len(runs)} runs of {date}: all six first-pass files present",
        files=files,
        data=data,
        **fields,
    )


# --------------------------------------------------------------------------- 1.2


_LISTING_MARK = "::topup-remaining::"


def _move_loop(names: list[str], target: str, kind: str) -> str:
    words = " ".join(q(n) for n in names)
    return (
        f'for f in {words}; do if [ -e "$f" ]; then '
        f'if mv -f -- "$f" {qpath(target)}/; then echo "::moved:: $f"; '
        f'else echo "::fail-{kind}:: $f"; rc=1; fi; fi; done'
    )


def move_outputs(site: RemoteSite, *, date: str, round: str, run_key: str) -> StepResult:
    """Step 1.2: move this date's IST ROOT files and interval plots to their folders.

    Idempotent: files already at the target are fine, a partial move is completed, and the
    result is verified at the targets (one ``file_facts`` call).
    """
    step = "1.2"
    runs = check_inputs(step, site, round, date, run_key)
    paths = site.paths(round)
    date_dir = f"{paths.inj}/{date}"
    base: dict[str, Any] = {"date": date, "round": round}
    roots = [_ist_root(site, r) for r in runs]
    pngs = [f"Interval_run{r}.png" for r in runs]
    cmd = (
        f"cd {qpath(date_dir)} || exit 3; rc=0; "
        f"{_move_loop(roots, paths.calib_const, 'root')}; "
        f"{_move_loop(pngs, paths.interval_plot, 'png')}; "
        # what stays in INJ/{date} afterwards: the legacy step reported this ``ls -la``
        f"echo {_LISTING_MARK}; ls -la; exit $rc"
    )
    res = site.run(cmd)
    if res.exit_code == 3:
        fail(step, 1200, f"INJ/{date} does not exist", **base)
    out_lines = res.stdout.splitlines()
    mark = out_lines.index(_LISTING_MARK) if _LISTING_MARK in out_lines else len(out_lines)
    moved = [ln.split(" ", 1)[1] for ln in out_lines[:mark] if ln.startswith("::moved:: ")]
    remaining = "\n".join(out_lines[mark + 1 :])
    specs = [
        FileSpec(f"{paths.calib_const}/{n}", r, "output") for r, n in zip(runs, roots, strict=True)
    ]
    specs += [
        FileSpec(f"{paths.interval_plot}/{n}", r, "output") for r, n in zip(runs, pngs, strict=True)
    ]
    records = file_records(site, specs)
    have = {rec.path for rec in records}
    missing_roots = [
        r for r, n in zip(runs, roots, strict=True) if f"{paths.calib_const}/{n}" not in have
    ]
    missing_pngs = [
        r for r, n in zip(runs, pngs, strict=True) if f"{paths.interval_plot}/{n}" not in have
    ]
    moved_set = set(moved)
    data: dict[str, Any] = {
        "remaining_files": remaining,
        "moved": moved,
        "already_in_place": [
            rec.path.rsplit("/", 1)[-1]
            for rec in records
            if rec.path.rsplit("/", 1)[-1] not in moved_set
        ],
    }
    detail = res.stderr.strip()[-300:]
    if missing_roots or "::fail-root::" in res.stdout:
        fail(
            step,
            1200,
            f"moving IST ROOT files to calibConst failed for runs {missing_roots}: {detail}",
            files=records,
            runs_incomplete=missing_roots,
            data=data,
            **base,
        )
    if missing_pngs or "::fail-png::" in res.stdout:
        fail(
            step,
            1201,
            f"moving interval plots to Interval_plot failed for runs {missing_pngs}: {detail}",
            files=records,
            runs_incomplete=missing_pngs,
            data=data,
            **base,
        )
    return StepResult(
        step=step,
        message=f"{len(moved)} files moved, {len(data['already_in_place'])} already in place",
        runs_complete=runs,
        files=records,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 1.3


def _parse_ist(stdout: str) -> tuple[dict[int, dict[str, int | None]], list[int]]:
    table: dict[int, dict[str, int | None]] = {}
    missing: list[int] = []
    current: int | None = None
    for line in stdout.splitlines():
        if line.startswith("::file:: "):
            current = int(line.split()[1])
            table[current] = dict.fromkeys(IST_FIELDS)
        elif line.startswith("::missing::") and current is not None:
            missing.append(current)
            del table[current]
            current = None
        elif current is not None:
            m = IST_LINE_RE.search(line)
            if m and table[current][m.group(1)] is None:
                table[current][m.group(1)] = int(m.group(2))
    return table, missing


def ist_check(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    check_ist: bool = True,
    exclude_runs: list[int] | None = None,
) -> StepResult:
    """Step 1.3: read the three interval values per run; register the runs in interval.txt.

    With ``check_ist`` every value must be 15000000, else 1302 (manual) and nothing is
    appended. ``{run} 15000000`` lines are appended only when missing, in run order.
    ``exclude_runs`` (a person's per-run decision after 1302) are not registered.
    """
    step = "1.3"
    all_runs = check_inputs(step, site, round, date, run_key)
    excluded = sorted({int(r) for r in exclude_runs or ()} & set(all_runs))
    unknown = sorted({int(r) for r in exclude_runs or ()} - set(all_runs))
    if unknown:
        fail(step, 20, f"exclude_runs {unknown} are not runs of {date}", date=date, round=round)
    runs = [r for r in all_runs if r not in excluded]
    paths = site.paths(round)
    date_dir = f"{paths.inj}/{date}"
    interval = f"{paths.inj}/interval.txt"
    base: dict[str, Any] = {"date": date, "round": round}
    pattern = q("interval_(From_DB|before_sorting|after_sorting)")
    files = " ".join(q(f"Interval_run{r}.txt") for r in all_runs)
    cmd = (
        f"cd {qpath(date_dir)} || exit 3; for f in {files}; do "
        'r=${f#Interval_run}; echo "::file:: ${r%.txt}"; '
        f'if [ -r "$f" ]; then grep -E {pattern} -- "$f"; else echo "::missing::"; fi; done; '
        "exit 0"
    )
    res = site.run(cmd)
    if not res.ok:
        fail(step, 1300, f"reading Interval files in INJ/{date} failed: {res.stderr[:200]}", **base)
    table, missing = _parse_ist(res.stdout)
    ist = {str(r): dict(v) for r, v in table.items()}
    data: dict[str, Any] = {
        "ist": ist,
        "ist_results": {str(r): [v[f] for f in IST_FIELDS] for r, v in table.items()},
    }
    if missing:
        fail(
            step,
            1301,
            f"no Interval_run{{run}}.txt for runs {missing} in INJ/{date}",
            runs_incomplete=missing,
            data=data,
            **base,
        )
    invalid = [r for r, v in table.items() if any(v[f] != IST_VALUE for f in IST_FIELDS)]
    data["invalid_runs"] = invalid
    data["check_ist"] = check_ist
    data["excluded_runs"] = excluded
    if check_ist and [r for r in invalid if r not in excluded]:
        fail(
            step,
            1302,
            f"IST values not all {IST_VALUE} (not non-topup mode) for runs {invalid}",
            runs_complete=[r for r in runs if r not in invalid],
            runs_incomplete=invalid,
            data={**data, "requires_manual_intervention": True},
            **base,
        )
    appended = append_run_lines(site, interval, runs, IST_VALUE)
    added, have, lines = appended.added, appended.present, appended.lines
    other = sorted(
        {
            ln.strip()
            for ln in lines
            if ln.split() and ln.split()[-1] != str(IST_VALUE) and ln.split()[0].isdigit()
        }
    )
    data.update(appended_runs=added, already_present_runs=have, interval_lines=lines)
    if other:
        data["other_interval_lines"] = other
        step_logger().warning("interval.txt also has other values for these runs: %s", other)
    res = appended.result
    if not res.ok or sorted(added + have) != runs:
        fail(
            step,
            1303,
            f"appending to INJ/interval.txt failed (exit {res.exit_code}): {res.stderr[:200]}",
            data=data,
            **base,
        )
    files = file_records(
        site,
        [FileSpec(f"{date_dir}/Interval_run{r}.txt", r, "verified") for r in runs]
        + [FileSpec(interval, None, "output")],
    )
    return StepResult(
        step=step,
        message=(
            f"IST values of {len(runs)} runs "
            + ("all 15000000" if not invalid else "not checked")
            + f"; {len(added)} lines appended to interval.txt, {len(have)} already there"
        ),
        runs_complete=runs,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 1.4


def ist_pdf(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 1.4: merge this date's interval plots into ``mergedd_IST.pdf`` and download it."""
    return date_pdf(
        "1.4",
        site,
        date=date,
        round=round,
        run_key=run_key,
        directory=lambda p: p.interval_plot,
        pngs=lambda r: [f"Interval_run{r}.png"],
        pdf_name="mergedd_IST.pdf",
        merge_code=1401,
        download_code=1402,
        merge_timeout_minutes=merge_timeout_minutes,
        runs_when_failed=True,
    )


# --------------------------------------------------------------------------- tasks

step1_1 = declare("step1_1", "1.1", "First-pass jobs (genJob.sh, boss.condor)", first_jobs)
step1_2 = declare(
    "step1_2", "1.2", "Move ROOT files to calibConst, interval plots to Interval_plot", move_outputs
)
step1_3 = declare("step1_3", "1.3", "IST check, register the runs in interval.txt", ist_check)
step1_4 = declare("step1_4", "1.4", "Merge the interval plots into a PDF and download it", ist_pdf)
