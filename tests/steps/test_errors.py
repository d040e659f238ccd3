"""The legacy error dictionary as data (spec steps-7-8.md §3.7)."""

from __future__ import annotations

import pickle
import re
from collections import Counter
from pathlib import Path

import pytest

from steps import errors
from steps.results import ErrorInfo, Outcome, StepError
from steps.step_log import fail

SPEC = Path("/work/shared/spec/steps-7-8.md")


def _legacy() -> list[int]:
    return [c for c in errors.ERRORS if c not in errors.ADDED_CODES]


def test_156_entries_with_consistent_fields() -> None:
    assert len(_legacy()) == 156
    assert len(errors.ERRORS) == 156 + len(errors.ADDED_CODES)
    assert {5202, 5304, 8101, 1114, 110} <= errors.ADDED_CODES
    for code, info in errors.ERRORS.items():
        assert isinstance(info, ErrorInfo)
        assert info.code == code
        assert re.fullmatch(r"[A-Z0-9_]+", info.name)
        assert info.message and info.message.isascii()


def test_counts_per_step_match_the_spec() -> None:
    per_group = Counter(
        "gen" if errors.step_of(c) == "gen" else errors.step_of(c).split(".")[0] for c in _legacy()
    )
    assert per_group == {
        "gen": 36,
        "1": 29,
        "2": 25,
        "3": 12,
        "4": 14,
        "5": 22,
        "6": 11,
        "7": 6,
        "8": 1,
    }
    assert len(errors.codes_for_step("1")) == 29 + 2  # + 1114, 1115 (ours)
    assert len(errors.codes_for_step("1.1")) == 14 + 2
    assert errors.codes_for_step("2.4") == [2003, 2400, 2401, 2402, 2403]


def test_actions_only_use_the_legacy_vocabulary() -> None:
    actions = Counter(i.action for i in errors.ERRORS.values())
    assert set(actions) == {"continue", "retry", "manual", "exit", "ai"}
    assert actions["exit"] == 1 and errors.ERRORS[1101].action == "exit"
    assert actions["ai"] == 1 and errors.ERRORS[103].action == "ai"


@pytest.mark.parametrize(
    ("code", "name", "action", "severity"),
    [
        (0, "SUCCESS", "continue", "info"),
        (22, "INVALID_DATE_FORMAT", "manual", "error"),
        (103, "UNKNOWN_ERROR", "ai", "error"),
        (1105, "STEP1_1_GENJOB_SCRIPT_FAILED", "retry", "error"),
        (1111, "STEP1_1_FILE_CHECK_TIMEOUT", "retry", "warning"),
        (1112, "STEP1_1_ANOMALY_FILE_DETECTED", "manual", "error"),
        (1302, "STEP1_3_INVALID_IST_VALUES", "manual", "warning"),
        (1401, "STEP1_4_MERGE_FAILED", "retry", "error"),
        (1402, "STEP1_4_DOWNLOAD_FAILED", "manual", "warning"),
        (2106, "STEP2_1_HIST_TIMEOUT", "retry", "warning"),
        (2503, "STEP2_5_DOWNLOAD_FAILED", "manual", "warning"),
        (3200, "STEP3_2_SCRIPT_FAILED", "continue", "warning"),
        (6102, "STEP6_1_NO_JOB_FILES_WHEN_SKIP", "manual", "error"),
        (7100, "STEP7_SCRIPT_FAILED", "retry", "error"),
        (8100, "STEP8_DB_SUBMISSION_FAILED", "retry", "error"),
        (5202, "STEP5_2_NO_SHIELD_FILE", "manual", "error"),
        (5304, "STEP5_3_EMPTY_ETS_CUT", "manual", "error"),
    ],
)
def test_known_entries(code: int, name: str, action: str, severity: str) -> None:
    info = errors.error(code)
    assert (info.code, info.name, info.action, info.severity) == (code, name, action, severity)


def test_table_matches_the_spec_row_by_row() -> None:
    """Every row of the spec table is in the dictionary with the same name/action/severity."""
    rows = [
        [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        for line in SPEC.read_text().splitlines()
        if re.match(r"^\| \d+ \| (gen|\d(\.\d)?) \|", line)
    ]
    assert len(rows) == 156
    for code, step, name, action, severity, *_ in rows:
        info = errors.ERRORS[int(code)]
        assert (info.name, info.action, info.severity) == (name, action, severity)
        assert errors.step_of(int(code)) == step


def test_our_codes_name_what_happened_and_ask_an_operator() -> None:
    """Crash, held job and missing job file: not fixed by a retry (issue 11 part 3)."""
    assert {110, 1114, 1115, 2108, 3107, 4106, 4107, 5107, 6105, 6106} <= errors.ADDED_CODES
    waits_codes = {110, 1114, 1115, 2108, 3107, 4106, 4107, 5107, 6105, 6106}
    for code in errors.ADDED_CODES:
        info = errors.error(code)
        assert info.action == "manual" and info.severity == "error"
        if code in waits_codes:
            assert info.name.endswith(("_CRASHED", "_HELD", "_WITHOUT_JOB_FILE")), info.name
    crash_of = {
        errors.step_of(c): c for c in errors.ADDED_CODES if "CRASHED" in errors.error(c).name
    }
    # every batch wait has a crash code next to its legacy (retry) timeout code
    waits = {"1.1": 1111, "2.1": 2106, "3.1": 3105, "4.1": 4104, "5.1": 5104, "6.1": 6103}
    for step, timeout in waits.items():
        assert errors.error(timeout).action == "retry" and "TIMEOUT" in errors.error(timeout).name
        assert step in crash_of


def test_unknown_code_becomes_103_ai() -> None:
    for code in (9999, 1500, None, -1):
        info = errors.error(code)
        assert info.code == 103 and info.name == "UNKNOWN_ERROR" and info.action == "ai"
        assert repr(code) in info.message
    assert errors.step_of(9999) is None


def test_error_returns_a_copy() -> None:
    info = errors.error(1200)
    info.message = "changed"
    assert errors.error(1200).message != "changed"


def test_required_downloads_go_to_an_operator() -> None:
    """Issue 11: the five report steps' download failures are ``manual`` (legacy: continue);
    the legacy table itself is untouched (see test_table_matches_the_spec_row_by_row)."""
    assert errors.REQUIRED_DOWNLOAD_CODES == {1402, 2503, 4202, 5403, 6203}
    for code in errors.REQUIRED_DOWNLOAD_CODES:
        assert errors.ERRORS[code].action == "continue"
        info = errors.error(code)
        assert info.action == "manual" and "DOWNLOAD" in info.name
        assert info.name == errors.ERRORS[code].name
    assert errors.error(5004).action == "continue"  # unused by the steps, left as legacy


def test_fail_raises_a_picklable_step_error_with_the_right_outcome() -> None:
    with pytest.raises(StepError) as exc:
        fail("3.2", 3200, "script failed", date="250624")
    assert exc.value.result.outcome == Outcome.WARNING  # continue code
    assert exc.value.action == "continue"
    assert "3200" in str(exc.value)
    again = pickle.loads(pickle.dumps(exc.value))
    assert again.result == exc.value.result
    with pytest.raises(StepError) as exc2:
        fail("1.1", 1112, "anomaly", data={"anomaly_file": "Interval_run0.png"})
    assert exc2.value.result.outcome == Outcome.FAILED
    assert exc2.value.action == "manual"
    assert exc2.value.result.data["anomaly_file"] == "Interval_run0.png"
