"""Steps 6.1 – 6.2: check the ETS-cut constants, then merge the check plots into a PDF.

Remote effects are the legacy ones (spec steps-3-6.md §10–11): in ``check_ETScut_CalibConst``
the cleanup ``rm -f ETScut* *png *root``, ``./genJob.sh`` (one ``hep_sub`` job per hist file)
drawing ``run{run}.png`` and ``run{run}.root``; then the SL6-container ``convert`` into
``mergedd_ETS_checkall.pdf``, downloaded as ``mergedd_ETS_checkall_{date}.pdf``.

Not reproduced: the endless interactive genJob, the resubmission of everything on a retry,
6101 (retry) where 6102 (manual) is meant for "check only, no job files", and a PDF of every
``run*.png`` in the directory (or a stale PDF of an earlier date).
"""

from __future__ import annotations

from steps.batch_stage import JobStage, run_stage
from steps.declare import declare
from steps.remote.site import RemoteSite
from steps.reports import date_pdf
from steps.results import StepResult

CHECK_ETS_CUT = JobStage(
    step="6.1",
    directory=lambda p: p.check_ets_cut,
    cleanup="rm -f ETScut* *png *root",
    job_file="ETScut_check_{run}.txt",
    outputs=("run{run}.png", "run{run}.root"),
    genjob_code=6100,
    no_job_files_code=6101,
    no_job_files_skip_code=6102,
    timeout_code=6103,
)


def check_ets_cut_jobs(
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
    """Step 6.1: submit the check jobs once; wait for ``run{run}.png`` and ``.root``."""
    return run_stage(
        CHECK_ETS_CUT,
        site,
        date=date,
        round=round,
        run_key=run_key,
        submit_job=submit_job,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )


def merge_ets_checkall(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 6.2: ``mergedd_ETS_checkall.pdf`` from this date's check plots, downloaded."""
    return date_pdf(
        "6.2",
        site,
        date=date,
        round=round,
        run_key=run_key,
        directory=lambda p: p.check_ets_cut,
        pngs=lambda r: [f"run{r}.png"],
        pdf_name="mergedd_ETS_checkall.pdf",
        merge_code=6200,
        download_code=6203,
        merge_timeout_minutes=merge_timeout_minutes,
    )


# --------------------------------------------------------------------------- tasks

step6_1 = declare("step6_1", "6.1", "Check the ETS-cut calibration constants", check_ets_cut_jobs)
step6_2 = declare(
    "step6_2", "6.2", "Merge the check plots into a PDF and download it", merge_ets_checkall
)
