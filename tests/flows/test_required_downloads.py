"""A required report that cannot be downloaded pauses its step for an operator (issue 11).

Real Prefect (test harness), the simulated site behind the real sshd pair. The login node's
SFTP subsystem is refused (the site's ``sftp_fail`` fault): the SSH layer retries within its
budget, then step 1.4 fails with 1402 and the run pauses for a decision instead of going on
without the IST PDF. The operator fixes SFTP and answers retry: the run completes with the
verified PDF.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from prefect import tags
from prefect.flow_runs import resume_flow_run

from flows.topup_standard import topup_standard
from steps import download_folders
from store import repository
from tests.chaos.report import record
from tests.flows.conftest import FAST, Driver, FlowEnv, unique_tag, wait_paused
from tests.flows.test_operator import SUBSET, _form_description

DATE = "250626"


def test_failed_ist_pdf_download_waits_for_the_operator_then_retry_completes(
    flow_env: FlowEnv,
) -> None:
    sites = Path(flow_env.downloads).parent / "sites" / "default.json"
    settings = flow_env.settings.model_copy(update={"ssh_retry_seconds": 1.5})
    sites.write_text(settings.model_dump_json())
    flow_env.sim.set_faults(sftp_fail=True)
    tag = unique_tag()
    seen: dict[str, object] = {}

    def operator() -> None:
        run = wait_paused(tag, key="step1-4-manual-1")
        seen["paused_at"] = time.monotonic()
        text = _form_description(run.id, "step1-4-manual-1")
        seen["text"] = text
        flow_env.sim.set_faults(sftp_fail=False)
        resume_flow_run(run.id, run_input={"action": "retry", "name": "fay", "note": "sftp ok"})

    started = time.monotonic()
    with Driver(operator) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_completed(), state.message
    text = str(seen["text"])
    assert "1402" in text and "STEP1_4_DOWNLOAD_FAILED" in text and "gave up after" in text
    run_id = state.result()["flow_run_id"]
    outcomes = {s.task_name: s for s in repository.step_runs(run_id)}
    assert outcomes["step1_4"].outcome == "success" and outcomes["step1_4"].attempts == 2
    (decision,) = repository.decisions(run_id)
    assert (decision.decision, decision.decided_by, decision.error_code) == ("retry", "fay", 1402)
    pdf = download_folders.folder(flow_env.downloads, run_id) / f"mergedd_IST_{DATE}.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    attempts = re.search(r"gave up after (\d+) attempts", text)
    assert attempts is not None
    record(
        group="transient",
        scenario="SFTP refused for a required report (step 1.4 IST PDF), whole run",
        injected="login node SFTP subsystem refused until the operator fixes it",
        kind="permanent",
        outcome="step 1.4 failed 1402 → paused for an operator; retry after the fix → Completed",
        retries=int(attempts.group(1)) - 1,
        lost_seconds=None,
        details=f"run paused {float(seen['paused_at']) - started:.1f} s after its start",
    )
