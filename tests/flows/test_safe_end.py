"""The safe end of the procedure (issue 10), on a real Prefect API over the real sshd pair.

Nothing unverified reaches the (simulated) offline database: the submission is its own flow,
maps interval.txt's runs to verified dates, asks a person about anything else, writes a
ledger row per real submission, and never starts one again by itself. A date whose run
failed is ``failed`` for step 0. A missing report stops the run before the reset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import tags

from flows.available_dates import available_dates
from flows.submit_constants import submit_constants
from flows.topup_standard import topup_standard
from store import dates as date_store
from store import ledger, repository
from tests.flows.conftest import FAST, ROUND, Driver, FlowEnv, operate, task_runs, unique_tag

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


def test_missing_report_stops_before_the_reset_and_abort_is_cancelled(
    flow_env: FlowEnv, sim_ssh: Any
) -> None:
    sim = flow_env.sim
    tag = unique_tag()
    plan = [("step7-verify-1", {"decision": "abort", "name": "carol", "note": "no reports"})]
    sim_ssh.set_sftp_fail(True)  # every download fails (the reports stay on the site)
    try:
        with Driver(operate(tag, plan, timeout=240)) as driver, tags(tag):
            state = topup_standard(
                date=DATE, **FAST, approve_reset=True, approved_by="alice", return_state=True
            )
    finally:
        sim_ssh.set_sftp_fail(False)
    driver.check()
    assert state.is_cancelled(), (state.type, state.message)
    assert "aborted by carol" in (state.message or "")
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "failed"
    assert any("mergedd_IST_250626.pdf" in m for m in record.missing)
    assert not any(
        d.kind == "pre-approval" for d in repository.decisions(str(state.state_details.flow_run_id))
    )
    # the reset never ran: this date's interval plots are still in place
    plots = Path(sim.inj(ROUND), "Interval_plot")
    assert all((plots / f"Interval_run{r}.png").exists() for r in sim.runs(ROUND, DATE))
    # step 0: the date is failed, so a backfill takes it again
    listing = available_dates(round=ROUND)
    assert DATE in listing["failed_dates"] and DATE in listing["unprocessed_dates"]
    assert DATE not in listing["processed_dates"]


def test_a_failed_real_submission_is_never_started_again_by_itself(flow_env: FlowEnv) -> None:
    """A submission killed after inserting some rows: ledger row failed, a person decides,
    no second attempt (no Prefect retry, no policy retry)."""
    from sim.db import submissions as sim_submissions

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
    submit_runs = [t for t in task_runs(run_id) if t.name.startswith("step8_1_submit")]
    assert len(submit_runs) == 1 and submit_runs[0].run_count == 1  # never retried
    decided = [d for d in repository.decisions(run_id) if d.kind == "resubmit"]
    assert [(d.decision, d.decided_by) for d in decided] == [("skip", "dave")]


def test_set_aside_removes_a_failed_dates_runs_before_anything_is_submitted(
    flow_env: FlowEnv,
) -> None:
    from sim.db import inserted_rows

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
