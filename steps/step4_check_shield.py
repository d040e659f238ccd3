"""Steps 4.1 – 4.2: check the shield calibration, then merge its plots into four PDFs.

Remote effects are the legacy ones (spec steps-3-6.md §4–5): in ``checkShieldCalib`` the
cleanup ``rm -f *.pdf && rm -f run*``, ``./genJob.sh`` (one ``hep_sub`` job per hist file), the
four plots ``run{run}_{cut_detail,after_cut,before_cut,check}.png`` of topup runs; then the
SL6-container ``convert`` into ``cut_detail.pdf``, ``after_cut.pdf``, ``before_cut.pdf`` and
``check.pdf``, downloaded as ``<stem>_{date}.pdf``.

Not reproduced: 4.1 not waiting at all by default (we wait for every job to END, i.e. its
batch log, not for PNGs: non-topup runs legitimately produce none, which made the legacy
``check=True`` time out), the cleanup running even when nothing is submitted, a retry
resubmitting everything, and 4.2 merging every PNG in the directory instead of this date's.
"""

from __future__ import annotations

from typing import Any

from steps.batch_stage import JobStage, run_stage
from steps.declare import declare
from steps.file_records import FileSpec, file_records
from steps.remote.errors import DownloadError
from steps.remote.site import RemoteSite
from steps.reports import download_path, download_pdf, merge_png_sets
from steps.results import FileRecord, StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail

FAMILIES = ("cut_detail", "after_cut", "before_cut", "check")
NO_PDF_CODE = 4002  # STEP4_2_SUCCESS_NO_PDF: normal for non-topup data

CHECK_SHIELD = JobStage(
    step="4.1",
    directory=lambda p: p.check_shield,
    cleanup="rm -f *.pdf && rm -f run*",
    job_file="run_{run}_4.txt",
    outputs=(),  # non-topup runs draw nothing: the end of the job is its batch log
    optional_outputs=tuple(f"run{{run}}_{f}.png" for f in FAMILIES),
    genjob_code=4101,
    no_job_files_code=4103,
    no_job_files_skip_code=4103,
    timeout_code=4104,
)


def _png(run: int, family: str) -> str:
    return f"run{run}_{family}.png"


# --------------------------------------------------------------------------- 4.1


def check_shield_jobs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
    submit_job: bool = True,
    check: bool = True,
    genjob_timeout_minutes: float = 30,
) -> StepResult:
    """Step 4.1: submit the checker jobs once; with ``check`` wait until every job ended.

    ``data["png_runs"]`` lists the runs that drew the four plots (topup runs); the others
    drew none, which is normal for non-topup data.
    """
    result = run_stage(
        CHECK_SHIELD,
        site,
        date=date,
        round=round,
        run_key=run_key,
        submit_job=submit_job,
        wait=check,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )
    result.data["check"] = check
    if not check:
        return result
    per_run: dict[int, int] = {}
    for rec in result.files:
        if rec.run is not None:
            per_run[rec.run] = per_run.get(rec.run, 0) + 1
    png_runs = sorted(r for r, n in per_run.items() if n == len(FAMILIES))
    partial = sorted(r for r, n in per_run.items() if 0 < n < len(FAMILIES))
    result.data.update(png_runs=png_runs, partial_png_runs=partial)
    result.message = (
        f"{len(result.runs_complete)} checker jobs of {date} ended; "
        f"{len(png_runs)} runs drew the four plots"
        + ("" if png_runs else " (non-topup data: no plots)")
    )
    return result


# --------------------------------------------------------------------------- 4.2


def merge_shield_pdfs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 4.2: one PDF per plot family from this date's PNGs, downloaded and verified.

    No PNG at all → success "no PDF (non-topup)" (4002). A failed merge → 4201, a failed
    download → 4202. 4201 is ``continue`` (outcome WARNING); 4202 is ``manual``: the four PDFs
    are required reports, an operator decides (steps/errors.py REQUIRED_DOWNLOAD_CODES).
    """
    step = "4.2"
    runs = check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).check_shield
    base: dict[str, Any] = {"date": date, "round": round}
    pngs = file_records(
        site,
        [FileSpec(f"{directory}/{_png(r, fam)}", r, "verified") for fam in FAMILIES for r in runs],
    )
    have = {rec.path.rsplit("/", 1)[-1] for rec in pngs if rec.size > 0}
    sets = []
    for fam in FAMILIES:
        names = [_png(r, fam) for r in runs if _png(r, fam) in have]
        if names:
            sets.append((names, f"{fam}.pdf"))
    png_runs = sorted({rec.run for rec in pngs if rec.run is not None and rec.size > 0})
    data: dict[str, Any] = {"png_runs": png_runs}
    if not sets:
        return StepResult(
            step=step,
            message=f"no PDF (non-topup): no checkShieldCalib plot of {date}",
            data={**data, "success_code": NO_PDF_CODE, "pdfs": []},
            **base,
        )
    res = merge_png_sets(site, directory, sets, timeout=merge_timeout_minutes * 60)
    pdf_paths = [f"{directory}/{pdf}" for _, pdf in sets]
    pdfs = file_records(site, [FileSpec(p, None, "pdf") for p in pdf_paths])
    built = {rec.path for rec in pdfs if rec.size > 0}
    data["pages"] = {pdf: len(names) for names, pdf in sets}
    not_built = [p.rsplit("/", 1)[-1] for p in pdf_paths if p not in built]
    if not res.ok or not_built:
        detail = (res.stderr or res.stdout).strip()[-300:]
        fail(
            step,
            4201,
            f"merging the checkShieldCalib plots failed (exit {res.exit_code}); "
            f"not built: {not_built}" + (f": {detail}" if detail else ""),
            files=[*pngs, *pdfs],
            data={**data, "not_built": not_built},
            **base,
        )
    downloads: list[FileRecord] = []
    failed: dict[str, str] = {}
    for path in pdf_paths:
        stem = path.rsplit("/", 1)[-1][: -len(".pdf")]
        try:
            downloads.append(
                download_pdf(site, path, download_path(site, run_key, f"{stem}_{date}.pdf"))
            )
        except DownloadError as exc:
            failed[f"{stem}.pdf"] = str(exc)
    files = [*pngs, *pdfs, *downloads]
    data["pdf_local_paths"] = [d.local_path for d in downloads]
    if failed:
        fail(
            step,
            4202,
            f"PDFs built, download failed for {sorted(failed)}",
            files=files,
            data={**data, "download_errors": failed},
            **base,
        )
    return StepResult(
        step=step,
        message=f"{len(downloads)} PDFs of {date} built and downloaded",
        runs_complete=png_runs,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- tasks

step4_1 = declare("step4_1", "4.1", "Check the shield calibration", check_shield_jobs)
step4_2 = declare(
    "step4_2",
    "4.2",
    "Merge the checkShieldCalib plots into four PDFs and download them",
    merge_shield_pdfs,
)
