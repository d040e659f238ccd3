"""Cancellation: remove what a flow run left running on the remote site.

Why: a cancelled or crashed flow run must not leave batch jobs filling the stage directories
or a detached generator still submitting (the next run of the same date would find them).
The flows' ``on_cancellation`` / ``on_crashed`` hooks call ``cancel_run``.

What belongs to a run: detached commands whose key starts with ``{run_key}.`` and the batch
clusters they submitted — those recorded in ``<control_dir>/<run_key>.jobs`` and, in case a
generator was stopped before its ids were recorded, any ``submitted to cluster N`` line in
the run's detached stdout files.
"""

from __future__ import annotations

from typing import Any

from steps.remote import validate
from steps.remote.site import RemoteSite
from steps.remote.validate import qpath
from steps.step8_parts import is_submission_key
from steps.step_log import step_logger


def _remove_jobs_script(site: RemoteSite, run_key: str) -> str:
    """ONE command: collect the run's cluster ids (digits only) and ``hep_rm`` them."""
    ctl = validate.path(site.settings.control_dir).rstrip("/")
    jobs = qpath(f"{ctl}/{run_key}.jobs")
    # The glob part stays outside the quotes; run_key is a validated job key.
    outs = f"{qpath(ctl)}/{run_key}.*/stdout"
    return (
        "ids=$( { grep -hoE '^[0-9]+$' "
        f"{jobs} 2>/dev/null; "
        f"cat {outs} 2>/dev/null | grep -oE 'submitted to cluster [0-9]+' "
        "| grep -oE '[0-9]+$'; } | sort -un | tr '\\n' ' ' ); "
        'echo "::ids:: $ids"; '
        'if [ -n "${ids// /}" ]; then '
        f'{site.env_prefix()}hep_rm $ids 2>&1; echo "::rc:: $?"; fi; true'
    )


def cancel_run(
    site: RemoteSite, run_key: str, submission_wait_seconds: float = 3600
) -> dict[str, Any]:
    """Kill the run's running detached commands, then ``hep_rm`` its batch jobs.

    A real database submission (``-sub_switch 1``) is never killed: half a submission is
    worse than a whole one. It is waited for (up to ``submission_wait_seconds``) and its end
    reported in ``submissions`` (key, exit status, output tail), so the caller can settle the
    ledger; one still running after the wait is reported with ``exit_code`` None.

    Remote commands: one listing, one kill per still-running detached command (usually none
    or one), one ``hep_rm``. Returns what was done: ``detached_killed``, ``job_ids``,
    ``hep_rm_output``, ``submissions``.
    """
    validate.job_key(run_key)
    log = step_logger()
    prefix = f"{run_key}."
    killed: list[str] = []
    submissions: list[dict[str, Any]] = []
    for d in site.list_detached(prefix):
        if d.state != "running":
            continue
        if is_submission_key(d.key):
            log.warning("cancel %s: waiting for the database submission %s", run_key, d.key)
            try:
                end = site.wait_detached(d.key, timeout=submission_wait_seconds, poll=2.0)
            except Exception as exc:  # still running, or the connection failed
                log.error("cancel %s: submission %s not finished: %s", run_key, d.key, exc)
                submissions.append({"key": d.key, "exit_code": None, "lost": False})
                continue
            submissions.append(
                {
                    "key": d.key,
                    "exit_code": end.exit_code,
                    "lost": end.lost,
                    "output": ((end.stdout or "") + (end.stderr or ""))[-4000:],
                }
            )
            continue
        if site.kill_detached(d.key):
            killed.append(d.key)
    # Generators first (above), so nothing submits new jobs after the removal below.
    res = site.run(_remove_jobs_script(site, run_key))
    ids: list[int] = []
    output: list[str] = []
    rc: int | None = None
    for line in res.stdout.splitlines():
        if line.startswith("::ids::"):
            ids = [int(x) for x in line[7:].split() if x.isdigit()]
        elif line.startswith("::rc::"):
            rc = int(line[6:].strip() or -1)
        elif line.strip():
            output.append(line)
    if killed or ids:
        log.warning("cancel %s: killed %s, hep_rm %s", run_key, killed or "-", ids or "-")
    return {
        "run_key": run_key,
        "detached_killed": killed,
        "job_ids": ids,
        "hep_rm_exit": rc,
        "hep_rm_output": "\n".join(output)[-2000:],
        "submissions": submissions,
    }
