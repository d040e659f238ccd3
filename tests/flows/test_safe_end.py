"""The safe end of the procedure (issue 10), on a real Prefect API over the real sshd pair.

Nothing unverified reaches the (simulated) offline database: the submission is its own flow,
maps interval.txt's runs to verified dates, asks a person about anything else, writes a
ledger row per real submission, and never starts one again by itself. A date whose run
failed is ``failed`` for step 0. A missing report stops the run before the reset.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client, tags

from flows.available_dates import available_dates
from flows.backfill import backfill
from flows.submit_constants import submit_constants
from flows.topup_standard import topup_standard
from sim.db import inserted_rows
from sim.db import submissions as sim_submissions
from steps import download_folders
from store import dates as date_store
from store import ledger, repository
from tests.chaos.report import record
from tests.flows.conftest import (
    FAST,
    ROUND,
    Driver,
    FlowEnv,
    operate,
    settled_task_runs,
    unique_tag,
)

pytestmark = pytest.mark.safe_end

HISTORY = ("250101", [85001, 85002])  # the sim's processed date (its runs open interval.txt)
DATE = "250626"  # 3 runs: 85420 85421 85422


def _history_verified() -> None:
    date_store.mark_date(ROUND, HISTORY[0], "verified", runs=HISTORY[1], registered_runs=HISTORY[1])


def _prepared(sim: Any, date: str, status: str) -> list[int]:
    """The state a date leaves after step 1.3 (its interval.txt lines), recorded as ``status``."""
    sim.prepare(date, ROUND, through="1")
    runs = sim.runs(ROUND, date)
    date_store.mark_date(ROUND, date, status, runs=runs, registered_runs=runs)
    return runs


def _inserted(sim: Any) -> list[tuple[str, str]]:
    return [(e["kind"], e["file"]) for e in sim.db_ledger()]


def _report(
    scenario: str,
    injected: str,
    outcome: str,
    sim: Any,
    bad_runs: list[int],
    round_: str = ROUND,
) -> None:
    """Record the measured end state for docs/reliability.md (section "safe end")."""
    started = sim_submissions(sim.root)
    per_part = Counter((s["kind"], s["run_from"], s["run_to"]) for s in started)
    rows = ledger.submissions(round_)
    in_db = [r for r in inserted_rows(sim.root) if r.get("run") in set(bad_runs)]
    record(
        group="safe-end",
        scenario=scenario,
        injected=injected,
        outcome=outcome,
        submissions=len(started),
        duplicate_submissions=sum(n - 1 for n in per_part.values()),
        rows_lost=len(in_db),
        details="ledger: "
        + (
            "; ".join(f"#{r.id} {r.part} {r.outcome} exit {r.exit_status}" for r in rows) or "empty"
        ),
    )


def test_normal_case_is_pre_approved_and_a_second_submission_needs_submit_again(
    flow_env: FlowEnv,
) -> None:
    sim = flow_env.sim
    _history_verified()
    runs = _prepared(sim, DATE, "verified")
    state = submit_constants(
        round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
    )
    assert state.is_completed(), state.message
    rows = ledger.submissions(ROUND)
    assert [(r.part, r.outcome, r.approved_by, r.exit_status) for r in rows] == [
        ("8.1", "submitted", "alice", 0),
        ("8.2", "submitted", "alice", 0),
        ("8.3", "submitted", "alice", 0),
    ]
    assert all(r.runs == [*HISTORY[1], *runs] and len(r.dry_run_sha256) == 64 for r in rows)
    assert all(r.dates == sorted([HISTORY[0], DATE]) for r in rows)
    inserted = _inserted(sim)
    assert inserted and len(set(inserted)) == len(inserted)

    # the same range again: all submitted already, so a person must say "submit again"
    tag = unique_tag()
    first = rows[0].id
    plan = [
        (
            f"step8-8-1-again-{first}",
            {"decision": "skip", "earlier_submission": first, "name": "bob"},
        )
    ]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        again = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert again.is_completed() and "skipped" in (again.message or ""), again.message
    assert len(ledger.submissions(ROUND)) == 3  # no new attempt
    assert _inserted(sim) == inserted  # nothing reached the database again
    _report(
        "verified round, then the same range again",
        "second submit-constants of a fully submitted range",
        "first: Completed, 3 parts pre-approved; second: asks 'submit again' (skip), nothing sent",
        sim,
        [],
    )


def test_runs_of_a_failed_date_are_refused_and_named(flow_env: FlowEnv) -> None:
    sim = flow_env.sim
    _history_verified()
    _prepared(sim, DATE, "failed")
    tag = unique_tag()
    plan = [("step8-range-1", {"decision": "abort", "name": "bob", "note": "fix 250626 first"})]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        state = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_cancelled(), state.type
    assert "aborted by bob" in (state.message or "") and "fix 250626 first" in (state.message or "")
    run_id = str(state.state_details.flow_run_id)
    decision = [d for d in repository.decisions(run_id) if d.kind == "range"]
    assert decision and "date 250626 is failed" in decision[0].note
    assert "85420" in decision[0].note
    assert ledger.submissions(ROUND) == [] and _inserted(sim) == []
    _report(
        "range holds a failed date",
        "date 250626 recorded failed, its lines in interval.txt",
        "asks before any dry run, names the date and runs; abort -> Cancelled, nothing sent",
        sim,
        sim.runs(ROUND, DATE),
    )


def test_included_runs_lift_the_pre_approval(flow_env: FlowEnv) -> None:
    """Runs nobody verified can be included by name; each part then asks for approval."""
    sim = flow_env.sim
    _prepared(sim, DATE, "verified")  # the history date is unknown to the store
    tag = unique_tag()
    approve = {"decision": "approve", "name": "carol", "note": "checked the dry run"}
    plan = [
        ("step8-range-1", {"decision": "include", "name": "carol", "note": "legacy dates"}),
        ("step8-approve-1", approve),
        ("step8-approve-2", approve),
        ("step8-approve-3", approve),
    ]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        state = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_completed(), state.message
    assert {r.approved_by for r in ledger.submissions(ROUND)} == {"carol"}
    _report(
        "runs of unknown origin included",
        "history runs unknown to the store, submission pre-approved",
        "include recorded; pre-approval lifted: 3 explicit approvals; Completed",
        sim,
        [],
    )


def test_a_report_altered_after_its_download_stops_the_reset(flow_env: FlowEnv) -> None:
    """The gate hashes every report again: a PDF changed on disk after its verified download
    is a missing item, named, and the pre-approved reset waits for a person."""
    from tests.flows.conftest import poll, runs_tagged, wait_paused

    sim = flow_env.sim
    tag = unique_tag()
    name = f"mergedd_IST_{DATE}.pdf"
    seen: dict[str, Any] = {}

    def operator() -> None:
        from prefect.flow_runs import resume_flow_run

        (run,) = poll(lambda: runs_tagged(tag), 120, "the run")
        folder = lambda: download_folders.folder(flow_env.downloads, str(run.id))  # noqa: E731
        poll(lambda: (folder() / name).exists(), 400, "the IST report downloaded", every=0.2)
        pdf = folder() / name
        with pdf.open("ab") as fh:
            fh.write(b"% altered after the download\n")
        paused = wait_paused(tag, key="step7-verify-1", timeout=400)
        seen["run"] = paused.id
        resume_flow_run(
            paused.id, run_input={"decision": "abort", "name": "carol", "note": "re-download"}
        )

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(
            date=DATE, **FAST, approve_reset=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_cancelled(), (state.type, state.message)
    assert "aborted by carol" in (state.message or "")
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "failed"
    assert any(
        f"report {name} does not match the sha256 verified at download time" in m
        for m in record.missing
    ), record.missing
    run_id = str(state.state_details.flow_run_id)
    assert not any(d.kind == "pre-approval" for d in repository.decisions(run_id))
    gate = [d for d in repository.decisions(run_id) if d.kind == "gate"]
    assert [(d.decision, d.decided_by) for d in gate] == [("abort", "carol")]
    # the reset never ran: this date's interval plots are still in place
    plots = Path(sim.inj(ROUND), "Interval_plot")
    assert all((plots / f"Interval_run{r}.png").exists() for r in sim.runs(ROUND, DATE))
    # step 0: the date is failed, so a backfill takes it again
    listing = available_dates(round=ROUND)
    assert DATE in listing["failed_dates"] and DATE in listing["unprocessed_dates"]
    assert DATE not in listing["processed_dates"]
    _report(
        "report altered after its download",
        "the IST PDF changed on disk before the reset; reset pre-approved",
        "gate before step 7 names it (sha256 mismatch); abort -> Cancelled; no reset; "
        "date failed for step 0",
        sim,
        [],
    )


def test_a_report_that_cannot_be_downloaded_is_retry_or_abort(
    flow_env: FlowEnv, sim_ssh: Any
) -> None:
    """Step 1.4's PDF never arrives: no "continue" is offered; abort cancels the run."""
    from tests.flows.conftest import wait_paused

    tag = unique_tag()
    seen: dict[str, Any] = {}

    def operator() -> None:
        from prefect.flow_runs import resume_flow_run

        from tests.flows.test_operator import _form_description

        run = wait_paused(tag, key="step1-4-manual-1", timeout=400)
        seen["form"] = _form_description(run.id, "step1-4-manual-1")
        with get_client(sync_client=True) as client:
            schema = client.read_flow_run_input(run.id, "paused-step1-4-manual-1-schema")
        seen["schema"] = schema
        resume_flow_run(run.id, run_input={"action": "abort", "name": "dan"})

    sim_ssh.set_sftp_fail(True)  # every download fails (the reports stay on the site)
    try:
        with Driver(operator) as driver, tags(tag):
            state = topup_standard(
                date=DATE, **FAST, approve_reset=True, approved_by="alice", return_state=True
            )
    finally:
        sim_ssh.set_sftp_fail(False)
    driver.check()
    assert state.is_cancelled(), (state.type, state.message)
    assert "1402" in seen["form"] and "**continue**" not in seen["form"]
    assert '"continue"' not in str(seen["schema"]) and '"retry"' in str(seen["schema"])
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "failed"


def test_a_failed_real_submission_is_never_started_again_by_itself(flow_env: FlowEnv) -> None:
    """A submission killed after inserting some rows: ledger row failed, a person decides,
    no second attempt (no Prefect retry, no policy retry)."""
    sim = flow_env.sim
    _history_verified()
    _prepared(sim, DATE, "verified")
    sim.set_faults(db_kill_after_rows={"InjSigInterval": 1})
    tag = unique_tag()
    plan = [("step8-8-1-failed-1", {"decision": "skip", "earlier_submission": 1, "name": "dave"})]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        state = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_completed() and "skipped" in (state.message or ""), state.message
    rows = ledger.submissions(ROUND)
    assert [(r.id, r.part, r.outcome, r.exit_status) for r in rows] == [(1, "8.1", "failed", 137)]
    started = [s for s in sim_submissions(sim.root) if s.get("kind") == "InjSigInterval"]
    assert len(started) == 1 and started[0]["rows_inserted"] == 1  # the partial insert, once
    run_id = str(state.state_details.flow_run_id)
    submit_runs = [t for t in settled_task_runs(run_id) if t.task_key.startswith("step8_1_submit")]
    assert len(submit_runs) == 1 and submit_runs[0].run_count == 1  # never retried
    decided = [d for d in repository.decisions(run_id) if d.kind == "resubmit"]
    assert [(d.decision, d.decided_by) for d in decided] == [("skip", "dave")]
    _report(
        "real submission killed mid-way",
        "8.1 genInsertCmd.sh -sub_switch 1 SIGKILLs itself after 1 row",
        "ledger #1 failed (exit 137); no retry (1 task run); person asked; skip -> Completed",
        sim,
        [],
    )


def test_set_aside_removes_a_failed_dates_runs_before_anything_is_submitted(
    flow_env: FlowEnv,
) -> None:
    sim = flow_env.sim
    _history_verified()
    failed = _prepared(sim, "250625", "failed")
    good = _prepared(sim, DATE, "verified")
    tag = unique_tag()
    approve = {"decision": "approve", "name": "gina"}
    plan = [
        ("step8-range-1", {"decision": "set_aside", "name": "gina", "note": "jobs crashed"}),
        ("step8-approve-1", approve),
        ("step8-approve-2", approve),
        ("step8-approve-3", approve),
    ]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        state = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_completed(), state.message
    interval = Path(sim.inj(ROUND), "interval.txt").read_text().split()
    assert not set(map(str, failed)) & set(interval)  # their lines are gone
    assert list(Path(sim.inj(ROUND)).glob("interval.txt.bak-*"))  # after a backup
    excl = date_store.exclusions(ROUND)
    assert sorted(e.run for e in excl) == failed and {e.reason for e in excl} == {"set-aside"}
    assert all(e.actions.get("changed") for e in excl)  # what was done on the site
    rows = ledger.submissions(ROUND)
    assert all(r.runs == [*HISTORY[1], *good] for r in rows) and len(rows) == 3
    in_db = {int(r["run"]) for r in inserted_rows(sim.root) if r.get("run") is not None}
    assert in_db and not in_db & set(failed)
    _report(
        "failed date set aside",
        "date 250625 recorded failed, its lines in interval.txt",
        "set_aside: lines removed (backup kept), constants to excluded/; 3 parts approved",
        sim,
        failed,
    )


def test_an_unknown_outcome_left_by_a_dead_run_is_settled_by_a_person_first(
    flow_env: FlowEnv,
) -> None:
    """The row a worker that died mid-submission leaves behind (outcome unknown), written
    here as it would be; the next submission asks a person what the database holds."""
    sim = flow_env.sim
    _history_verified()
    runs = _prepared(sim, DATE, "verified")
    dead = ledger.open_submission(
        round=ROUND,
        part="8.1",
        run_from=HISTORY[1][0],
        run_to=runs[-1],
        runs=[*HISTORY[1], *runs],
        dates=[HISTORY[0], DATE],
        flow_run_id="00000000-dead-4000-8000-000000000000",
        approved_by="alice",
        dry_run_sha256="0" * 64,
        remote_key="dead.8_1.s6_submit",
    )
    tag = unique_tag()
    approve = {"decision": "approve", "name": "hal"}
    checked = {"outcome": "failed", "submission_id": dead.id, "name": "hal", "note": "0 rows"}
    plan = [
        (f"step8-settle-{dead.id}", checked),
        ("step8-approve-1", approve),  # no pre-approval after an unusual case
        ("step8-approve-2", approve),
        ("step8-approve-3", approve),
    ]
    with Driver(operate(tag, plan)) as driver, tags(tag):
        state = submit_constants(
            round=ROUND, approve_db_submit=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_completed(), state.message
    rows = ledger.submissions(ROUND)
    assert (rows[0].id, rows[0].outcome, rows[0].decided_by, rows[0].note) == (
        dead.id,
        "failed",
        "hal",
        "0 rows",
    )
    assert [(r.part, r.outcome) for r in rows[1:]] == [
        ("8.1", "submitted"),
        ("8.2", "submitted"),
        ("8.3", "submitted"),
    ]
    _report(
        "unknown outcome left by a dead run",
        "ledger row 8.1 'unknown' from an earlier flow run",
        "asks a person first (settled failed by hal), then 3 explicit approvals",
        sim,
        [],
    )


def test_backfill_proposes_one_submission_once_every_date_is_verified(flow_env: FlowEnv) -> None:
    """Two dates (round17), each verified and reset; then ONE submission for the round, asked
    for part by part although the dates' resets were pre-approved."""
    sim = flow_env.sim
    tag = unique_tag()
    approve = {"decision": "approve", "name": "ivy", "note": "round17 constants"}
    plan = [(f"step8-approve-{i}", approve) for i in (1, 2, 3)]
    with Driver(operate(tag, plan, timeout=600)) as driver, tags(tag):
        state = backfill(
            round="round17", **FAST, approve_reset=True, approved_by="alice", return_state=True
        )
    driver.check()
    assert state.is_completed(), state.message
    out = state.result()
    assert out["dates"] == ["240501", "240502"] and out["workflow_version"] == "1.2.0"
    assert out["submission"]["proposed"] is True and out["submission"]["state"] == "COMPLETED"
    records = {r.date: r.status for r in date_store.date_records("round17")}
    assert records == {"240501": "verified", "240502": "verified"}
    rows = ledger.submissions("round17")
    both = sim.runs("round17", "240501") + sim.runs("round17", "240502")
    assert [(r.part, r.outcome, r.approved_by) for r in rows] == [
        ("8.1", "submitted", "ivy"),
        ("8.2", "submitted", "ivy"),
        ("8.3", "submitted", "ivy"),
    ]
    assert all(r.runs == both and r.dates == ["240501", "240502"] for r in rows)
    _report(
        "backfill of a round",
        "2 dates, resets pre-approved",
        "each date verified and reset; one submission proposed at the end, 3 parts approved",
        sim,
        [],
        round_="round17",
    )


def test_losing_the_site_during_the_approved_reset_is_a_decision(
    flow_env: FlowEnv, sim_ssh: Any
) -> None:
    """The login node goes down while reset.sh runs: after the step's own retry the run
    pauses (retry / abort) instead of failing; retry re-attaches to the same reset.sh."""
    from prefect.flow_runs import resume_flow_run

    from tests.flows.conftest import poll, runs_tagged, wait_paused

    sim = flow_env.sim
    # Long enough that the login node goes down while reset.sh still runs, on a loaded
    # machine too (the outage also lasts longer than this: no time is added after it).
    sim.set_faults(slow={"reset.sh": 12.0})
    ctl = Path(flow_env.settings.control_dir)
    tag = unique_tag()
    seen: dict[str, Any] = {}

    def operator() -> None:
        (run,) = poll(lambda: runs_tagged(tag), 120, "the run")
        poll(lambda: list(ctl.glob(f"{run.id}.7.*")), 400, "reset.sh started", every=0.2)
        sim_ssh.stop("login")
        try:
            paused = wait_paused(tag, key="step7-outage-1", timeout=240)
            seen["paused"] = paused.id
        finally:
            sim_ssh.start()
        resume_flow_run(paused.id, run_input={"action": "retry", "name": "kim"})

    try:
        with Driver(operator) as driver, tags(tag):
            state = topup_standard(
                date=DATE, **FAST, approve_reset=True, approved_by="alice", return_state=True
            )
        driver.check()
    finally:
        sim_ssh.start()
    assert state.is_completed(), (state.type, state.message)
    run_id = str(state.state_details.flow_run_id)
    outage = [d for d in repository.decisions(run_id) if d.kind == "outage"]
    assert [(d.decision, d.decided_by) for d in outage] == [("retry", "kim")]
    # reset.sh ran once: one control directory, re-attached after the outage
    assert len([p for p in ctl.glob(f"{run_id}.7.*") if p.is_dir()]) == 1
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "verified" and record.reset_done
