"""Workflow definitions as data and the error policy (no flow run needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.definitions import DefinitionError, list_definitions, load
from flows.policy import Reaction, is_retryable, reaction, task_options, timeout_minutes
from flows.procedure import check_tasks
from flows.recording import artifact_key, missing_required
from steps.errors import error
from steps.remote.errors import RemoteConnectionError, RemoteTimeout
from steps.results import FileRecord, StepError, StepResult

STANDARD_IDS = [
    "step1_1",
    "step1_2",
    "step1_3",
    "step1_4",
    "step2_1",
    "step2_2",
    "step2_3",
    "step2_4",
    "step2_5",
    "step3_1",
    "step3_2",
    "step4_1",
    "step4_2",
    "step5_1",
    "step5_2",
    "step5_3",
    "step5_4",
    "step6_1",
    "step6_2",
    "step7",
    "step8",
]


def test_packaged_definitions_load_and_name_real_tasks() -> None:
    found = {(d.name, d.version) for d in list_definitions()}
    assert {
        ("topup-standard", "1.0.0"),
        ("topup-standard", "1.1.0"),
        ("topup-standard-steps", "1.0.2"),
        ("available-dates", "1.0.0"),
        ("backfill", "1.1.0"),
        ("submit-constants", "1.0.0"),
    } <= found
    for d in list_definitions():
        check_tasks(d)  # every task exists and accepts the step's options


def test_standard_runs_all_21_steps_and_versions_differ() -> None:
    v1 = load("topup-standard", "1.0.0")
    v11 = load("topup-standard", "1.1.0")
    assert v1.step_ids == STANDARD_IDS == v11.step_ids
    assert v1.tag == "workflow:topup-standard@1.0.0"
    assert v1.step("step7").approval == "reset" and v1.step("step8").approval == "db_submit"
    assert v1.step("step8").tasks[0] == "step8_range" and len(v1.step("step8").tasks) == 7
    assert v1.step_for_task("step8_2_submit").id == "step8"  # type: ignore[union-attr]
    # 1.1.0: longer waits, no shield check
    assert v1.step("step1_1").options["max_wait_minutes"] == 25
    assert v11.step("step1_1").options["max_wait_minutes"] == 40
    assert v1.step("step4_1").options["check"] is True
    assert v11.step("step4_1").options["check"] is False
    assert load("topup-standard").version == "1.2.0"  # latest: ends after the reset
    v12 = load("topup-standard", "1.2.0")
    assert v12.step_ids == STANDARD_IDS[:-1] and "approve_db_submit" not in v12.parameters
    assert v12.step("step4_2").reports and v12.step("step1_4").reports == ["mergedd_IST_{date}.pdf"]
    assert load("topup_standard_workflow", "1.0.0") is v1  # legacy alias
    # an alias means the version that declares it, not the latest of the name
    assert load("topup_standard_workflow") is v1
    dates = load("get_available_dates_workflow")
    assert (dates.name, dates.version, dates.flow) == (
        "get-available-dates",
        "1.0.3",
        "available-dates",
    )
    assert dates.step_ids == ["step0", "step1"] and dates.step("step0").pause_after
    assert dates.step("step1").tasks == ["step1_noop"]
    assert dates.execution is not None and dates.execution.max_retries == 2
    assert load("available-dates").version == "1.0.0"  # the new name: no review pause
    with pytest.raises(DefinitionError, match="no version '9.9.9'"):
        load("topup-standard", "9.9.9")
    with pytest.raises(DefinitionError, match="unknown workflow"):
        load("nope")


def test_validate_parameters_applies_defaults_and_names_bad_fields() -> None:
    d = load("topup-standard", "1.0.0")
    ok = d.validate_parameters({"date": "250624", "max_wait_minutes": "30", "submit_job": "False"})
    assert ok["round"] == "round18" and ok["site"] == "default"
    assert ok["max_wait_minutes"] == 30.0 and ok["submit_job"] is False
    assert ok["operator_timeout_hours"] == 24 and ok["approve_reset"] is False
    # the legacy notebook sends the date as a number: the same 6-digit string
    assert d.validate_parameters({"date": 250520})["date"] == "250520"
    bad_cases = {
        "date": {"date": "250632"},  # not a calendar day
        "round": {"date": "250624", "round": "r18"},
        "max_wait_minutes": {"date": "250624", "max_wait_minutes": 999},
        "start_at_step": {"date": "250624", "start_at_step": "step9"},
        "check_ist": {"date": "250624", "check_ist": "maybe"},
        "unknown_param": {"date": "250624", "unknown_param": 1},
    }
    cases = [*bad_cases.items(), ("date", {"date": 2506240})]  # a number, not 6 digits
    for field, values in cases:
        with pytest.raises(ValidationError) as exc:
            d.validate_parameters(values)
        assert exc.value.errors()[0]["loc"] == (field,), field
    with pytest.raises(ValidationError) as exc:
        d.validate_parameters({})
    assert exc.value.errors()[0]["type"] == "missing"
    with pytest.raises(ValueError, match="approved_by"):
        d.validate_parameters({"date": "250624", "approve_db_submit": True})
    assert (
        d.validate_parameters({"date": "250624", "approve_reset": True, "approved_by": "alice"})[
            "approved_by"
        ]
        == "alice"
    )
    schema = d.parameters_json_schema()
    assert schema["required"] == ["date"] and "start_at_step" in schema["properties"]


def test_extra_definition_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = json.loads(
        (Path(__file__).parents[2] / "flows/definitions/topup-standard-1.0.0.json").read_text()
    )
    custom = {**base, "version": "2.0.0-site", "steps": base["steps"][:2], "legacy_names": []}
    (tmp_path / "mine.json").write_text(json.dumps(custom))
    monkeypatch.setenv("TOPUP_WORKFLOWS_DIR", str(tmp_path))
    assert load("topup-standard", "2.0.0-site").step_ids == ["step1_1", "step1_2"]
    # the start_at_step choices follow the steps
    with pytest.raises(ValidationError):
        load("topup-standard", "2.0.0-site").validate_parameters(
            {"date": "250624", "start_at_step": "step1_3"}
        )
    (tmp_path / "dup.json").write_text(json.dumps(custom))
    with pytest.raises(DefinitionError, match="defined twice"):
        list_definitions()
    (tmp_path / "dup.json").write_text(json.dumps({**custom, "version": "x"}))
    with pytest.raises(DefinitionError, match="invalid workflow definition"):
        list_definitions()


def _step_error(code: int) -> StepError:
    return StepError(StepResult(step="1.1", error=error(code), message="m"))


def test_policy_retries_only_retry_codes_and_remote_failures() -> None:
    assert is_retryable(_step_error(1111))  # retry code
    assert not is_retryable(_step_error(1302))  # manual
    assert is_retryable(RemoteTimeout("x", 1)) and is_retryable(RemoteConnectionError("x"))
    assert not is_retryable(ValueError("x"))
    assert reaction(_step_error(1302)) == Reaction.ASK
    assert reaction(_step_error(1111)) == Reaction.FAIL  # retries exhausted
    assert reaction(RemoteTimeout("x", 1)) == Reaction.FAIL
    continue_code = next(c for c in range(2000, 2010) if error(c).action == "continue")
    assert not is_retryable(_step_error(continue_code))
    assert reaction(_step_error(continue_code)) == Reaction.GO_ON


def test_task_options_follow_the_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    step = load("topup-standard", "1.0.0").step("step1_1")
    monkeypatch.setenv("TOPUP_RETRY_DELAY_SCALE", "1")
    opts = task_options(step, None)
    assert opts["retries"] == 2 and opts["retry_delay_seconds"] == [60.0, 120.0]
    assert opts["timeout_seconds"] == step.timeout_minutes * 60
    # a longer wait keeps the definition's margin; a shorter one keeps the definition's limit
    assert timeout_minutes(step, 100) == 100 + step.timeout_minutes - 25
    assert timeout_minutes(step, 1) == step.timeout_minutes
    reset = load("topup-standard", "1.0.0").step("step7")
    assert timeout_minutes(reset, 100) == reset.timeout_minutes  # not a batch wait


def test_missing_required_files_per_complete_run() -> None:
    step = load("topup-standard", "1.0.0").step("step1_1")

    def rec(name: str, run: int) -> FileRecord:
        return FileRecord(path=f"/x/250624/{name}", size=1, sha256="0" * 64, run=run)

    files = [rec(f"Interval_run{r}.{e}", r) for r in (1, 2) for e in ("png", "txt")]
    files += [rec("InjSigTime_001_720.root", 1)]
    result = StepResult(step="1.1", date="250624", runs_complete=[1, 2], files=files)
    assert missing_required(step, result) == ["InjSigTime_002_*.root"]
    assert artifact_key("round18", "250624", "step1_1", "files") == "round18-250624-step1-1-files"
