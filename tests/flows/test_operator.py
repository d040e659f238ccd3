"""Pauses for a human: a manual error (IST anomaly), the reset and database approvals.

The flow runs in the main thread as in a worker; a driver thread watches it through the
Prefect API (polling with a deadline) and resumes it with ``run_input``, as the UI or the
facade would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import get_client, tags
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.flow_runs import resume_flow_run

from flows.definitions import load
from flows.naming import WAITS_LABEL
from flows.topup_standard import topup_standard
from store import dates as date_store
from store import repository
from store.ledger import submissions as ledger_rows
from tests.flows.conftest import (
    FAST,
    ROUND,
    Driver,
    FlowEnv,
    poll,
    read_run,
    unique_tag,
    wait_paused,
)

DATE = "250626"  # 3 runs: 85420 85421 85422
ODD_RUN = 85421
SUBSET = {"workflow": "topup-standard-steps", "workflow_version": "1.0.2"}


def _interval_lines(sim: Any) -> list[str]:
    return Path(sim.inj(ROUND), "interval.txt").read_text().splitlines()


def _form_description(flow_run_id: Any, pause_key: str) -> str:
    """The text shown above the pause form (stored by Prefect with the run input schema).

    Prefect stores it just after the run turns Paused, so a reader that saw Paused may ask
    a moment too early: wait until it is there."""

    def stored() -> str | None:
        with get_client(sync_client=True) as client:
            try:
                return client.read_flow_run_input(flow_run_id, f"paused-{pause_key}-description")
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code == 404:
                    return None
                raise

    return poll(stored, 30, f"the description of pause {pause_key}", every=0.1)


def test_ist_anomaly_is_decided_run_by_run(flow_env: FlowEnv) -> None:
    """1.3: the form shows From_DB, before and after sorting in that order; every odd run must
    be registered or excluded by name; an answer that leaves one out is asked again."""
    sim = flow_env.sim
    sim.set_faults(ist={ODD_RUN: [14000000, 15000000, 13000000]})  # before, from_db, after
    tag = unique_tag()
    seen: dict[str, str] = {}

    def operator() -> None:
        run = wait_paused(tag, key="step1-3-ist-1")
        seen["first"] = _form_description(run.id, "step1-3-ist-1")
        assert not any(line.startswith(f"{ODD_RUN} ") for line in _interval_lines(sim))
        resume_flow_run(run.id, run_input={"action": "decide", "name": "bob"})  # no run listed
        run = wait_paused(tag, key="step1-3-ist-101")
        seen["again"] = _form_description(run.id, "step1-3-ist-101")
        resume_flow_run(
            run.id,
            run_input={
                "action": "decide",
                "exclude_runs": str(ODD_RUN),
                "name": "bob",
                "note": "odd",
            },
        )

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_completed(), state.message
    run_id = state.result()["flow_run_id"]
    assert "| run | From_DB | before sorting | after sorting |" in seen["first"]
    assert f"| {ODD_RUN} | 15000000 | 14000000 | 13000000 |" in seen["first"]
    assert f"in neither list: [{ODD_RUN}]" in seen["again"]
    # the odd run is not registered; the others are, once
    lines = _interval_lines(sim)
    assert not any(line.startswith(f"{ODD_RUN} ") for line in lines)
    assert {f"{r} 15000000" for r in (85420, 85422)} <= set(lines)
    assert [(e.run, e.reason, e.decided_by) for e in date_store.exclusions(ROUND)] == [
        (ODD_RUN, "ist", "bob")
    ]
    (decision,) = repository.decisions(run_id)
    assert (decision.kind, decision.decision, decision.decided_by, decision.error_code) == (
        "ist",
        "exclude",
        "bob",
        1302,
    )
    outcomes = {s.task_name: s for s in repository.step_runs(run_id)}
    assert outcomes["step1_3"].outcome == "success"
    assert outcomes["step1_3"].data["excluded_runs"] == [ODD_RUN]
    # a subset workflow verifies its own steps, not the date (steps 2 - 6 never ran)
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "unverified"


def test_ist_anomaly_abort_cancels_the_run_with_the_reason(flow_env: FlowEnv) -> None:
    flow_env.sim.set_faults(ist={ODD_RUN: 14000000})
    tag = unique_tag()

    def operator() -> None:
        run = wait_paused(tag, key="step1-3-ist-1")
        resume_flow_run(
            run.id, run_input={"action": "abort", "name": "carol", "note": "beam was off"}
        )

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(date=DATE, **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_cancelled(), state.type
    assert "aborted by carol at step 1.3" in (state.message or "")
    assert "beam was off" in (state.message or "")
    run_id = str(state.state_details.flow_run_id)
    assert read_run(run_id).state_type.value == "CANCELLED"  # type: ignore[union-attr]
    wf = repository.workflow_run(run_id)
    assert wf is not None and wf.status == "aborted" and "carol" in wf.message
    assert repository.step_runs(run_id)[-1].task_name == "step1_3"  # nothing ran after it
    record = date_store.date_record(ROUND, DATE)
    assert record is not None and record.status == "failed"


def test_reset_and_db_submission_wait_for_approval(flow_env: FlowEnv) -> None:
    sim = flow_env.sim
    tag = unique_tag()
    ctl = Path(flow_env.settings.control_dir)
    seen: dict[str, Any] = {}

    def resume_at(key: str, run_input: dict[str, Any]) -> Any:
        run = wait_paused(tag, key=key)
        seen[key] = {
            "ledger": list(sim.db_ledger()),
            "text": _form_description(run.id, key),
            "waits": (run.labels or {}).get(WAITS_LABEL),  # set before the pause
        }
        resume_flow_run(run.id, run_input=run_input)
        return run

    def operator() -> None:
        # nothing of the date ran: the gate lists it; dave accepts, then skips the reset
        resume_at("step7-verify-1", {"decision": "accept", "name": "dave", "note": "test"})
        run = resume_at("step7-approve", {"decision": "skip", "name": "dave", "note": "later"})
        seen["reset_keys"] = sorted(p.name for p in ctl.glob(f"{run.id}.7.*"))
        # the old definition's step 8: the history runs are unknown to the store
        resume_at("step8-range-1", {"decision": "include", "name": "erin", "note": "history"})
        approve = {"decision": "approve", "name": "erin", "note": "dry run checked"}
        resume_at("step8-approve-1", approve)
        resume_at("step8-approve-2", approve)
        resume_at("step8-approve-3", approve)

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(
            date=DATE, workflow_version="1.0.0", start_at_step="step7", **FAST, return_state=True
        )
    driver.check()
    assert state.is_completed(), state.message
    run_id = state.result()["flow_run_id"]
    # reset: waited, then skipped by the operator: never started on the remote
    assert seen["reset_keys"] == []
    assert seen["step7-approve"]["ledger"] == []
    # each database part: nothing inserted before its approval, the dry run shown
    kinds = ["InjSigInterval", "InjSigTime", "OfflineEvtFilter"]
    for i, key in enumerate(["step8-approve-1", "step8-approve-2", "step8-approve-3"]):
        assert {e["kind"] for e in seen[key]["ledger"]} == set(kinds[:i]), key
        assert "planned" in seen[key]["text"] and "sub_switch 0" in seen[key]["text"]
    # each pause says which decision waits (notifications and `topup status` show it)
    assert {k: v["waits"] for k, v in seen.items() if isinstance(v, dict)} == {
        "step7-verify-1": "step 7 verification (date not verified)",
        "step7-approve": "step 7 reset approval",
        "step8-range-1": "step 8 run range decision",
        "step8-approve-1": "step 8.1 database submission approval",
        "step8-approve-2": "step 8.2 database submission approval",
        "step8-approve-3": "step 8.3 database submission approval",
    }
    ledger = sim.db_ledger()
    assert {e["kind"] for e in ledger} == set(kinds)
    assert len({(e["kind"], e["file"]) for e in ledger}) == len(ledger)  # each insert once
    decisions = [
        (d.step_id, d.kind, d.decision, d.decided_by) for d in repository.decisions(run_id)
    ]
    assert decisions == [
        ("step7", "gate", "accept", "dave"),
        ("step7", "approval", "skip", "dave"),
        ("step8", "range", "include", "erin"),
        *[("step8", "approval", "approve", "erin")] * 3,
    ]
    assert [(r.part, r.outcome, r.approved_by) for r in ledger_rows(ROUND)] == [
        ("8.1", "submitted", "erin"),
        ("8.2", "submitted", "erin"),
        ("8.3", "submitted", "erin"),
    ]
    submits = [s for s in repository.step_runs(run_id) if s.task_name.endswith("_submit")]
    assert [s.data["approved_by"] for s in submits] == ["erin"] * 3
    skipped = {s.task_name for s in repository.step_runs(run_id) if s.outcome == "skipped"}
    assert {"step1_1", "step6_2", "step7"} <= skipped
    # the dry runs are also shown as artifacts
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    dry = [a for a in arts if (a.key or "").endswith("dry-run")]
    assert len(dry) == 3 and all("planned" in str(a.data) for a in dry)


def test_review_point_after_a_step_from_a_site_definition(
    flow_env: FlowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A definition from TOPUP_WORKFLOWS_DIR with ``pause_after`` on its only step."""
    base = load("topup-standard-steps", "1.0.2").model_dump(mode="json")
    base["steps"] = [{**base["steps"][0], "pause_after": True, "retries": 0}]
    base.update(version="0.1.0-review", legacy_names=[])
    base["parameters"]["start_at_step"].pop("enum")
    (tmp_path / "review.json").write_text(json.dumps(base))
    monkeypatch.setenv("TOPUP_WORKFLOWS_DIR", str(tmp_path))
    tag = unique_tag()

    def reviewer() -> None:
        run = wait_paused(tag, key="step1-1-review")
        resume_flow_run(run.id, run_input={"action": "continue", "name": "fred"})

    with Driver(reviewer) as driver, tags(tag):
        state = topup_standard(
            date=DATE,
            workflow="topup-standard-steps",
            workflow_version="0.1.0-review",
            **FAST,
            return_state=True,
        )
    driver.check()
    assert state.is_completed(), state.message
    run_id = state.result()["flow_run_id"]
    assert "workflow:topup-standard-steps@0.1.0-review" in read_run(run_id).tags
    (decision,) = repository.decisions(run_id)
    assert (decision.kind, decision.decision, decision.decided_by) == ("review", "continue", "fred")


def test_a_date_without_raw_data_offers_no_continue(flow_env: FlowEnv) -> None:
    """Step 1.1 on a date in DATA without raw files (code 70): nothing to go on from, so the
    form offers retry or abort only, and its text does not suggest continuing."""
    tag = unique_tag()
    key = "step1-1-manual-1"
    seen: dict[str, Any] = {}

    def operator() -> None:
        run = wait_paused(tag, key=key)
        seen["description"] = _form_description(run.id, key)
        with get_client(sync_client=True) as client:
            seen["schema"] = json.loads(client.read_flow_run_input(run.id, f"paused-{key}-schema"))
        resume_flow_run(run.id, run_input={"action": "abort", "name": "erin", "note": "no data"})

    with Driver(operator) as driver, tags(tag):
        state = topup_standard(date="250627", **SUBSET, **FAST, return_state=True)
    driver.check()
    assert state.is_cancelled(), state.message
    assert "[70 DATA_VALIDATION_FAILED]" in seen["description"], seen["description"]
    assert "**continue**" not in seen["description"]
    assert seen["schema"]["properties"]["action"]["enum"] == ["retry", "abort"], seen["schema"]


def test_a_question_without_a_description_is_refused_before_pausing() -> None:
    """The facade and the CLI show a form once its description is stored (Prefect stores
    it after the schema), so a blank description would be a question nobody sees."""
    from flows.operator import IstDecision, ask

    with pytest.raises(ValueError, match="needs a description"):
        ask(IstDecision, key="step1-3-ist-1", description="  ", timeout_hours=1)
