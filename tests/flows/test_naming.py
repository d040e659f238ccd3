"""Run names, task-run names, tags and the decision a pause waits for (``flows.naming``).

Pure functions: no server needed. The flows, the CLI and the facade all use them, so what
an operator reads in the UI, in a notification and in ``topup status`` is the same.
"""

from __future__ import annotations

import re

import pytest

from flows.definitions import load
from flows.naming import (
    flow_run_name,
    run_tags,
    task_of,
    task_run_name,
    waiting_for,
    with_workflow_tag,
)

VALID_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9.-]{0,119}$")


def test_runs_are_named_by_what_they_are() -> None:
    p = {"round": "round18", "date": "250624", "workflow": "topup-standard"}
    assert flow_run_name("topup-standard", p, "1.2.0") == "round18-250624-topup-standard-1.2.0"
    steps = {**p, "workflow": "topup-standard-steps", "workflow_version": "1.0.2"}
    assert flow_run_name("topup-standard", steps) == "round18-250624-topup-standard-steps-1.0.2"
    sub = {"round": "round18", "run_from": 85383, "run_to": 85390}
    assert flow_run_name("submit-constants", sub) == "round18-submit-constants-85383-85390"
    assert flow_run_name("submit-constants", {"round": "round18"}) == "round18-submit-constants"
    back = {"round": "round18", "dates": "250624,250601, 250610"}
    assert flow_run_name("backfill", back) == "round18-backfill-250601-250624"
    assert flow_run_name("backfill", {"round": "round18"}) == "round18-backfill"
    dates = {"round": "round18", "workflow": "get-available-dates"}
    assert flow_run_name("available-dates", dates, "1.0.3") == "round18-get-available-dates-1.0.3"


@pytest.mark.parametrize(
    "value",
    [
        "",
        None,
        "round18; rm -rf /",
        "$(reboot)",
        "../../etc/passwd",
        "r" * 500,
        "ünïcödé",
        "{date}",
        "-",
        "a\nb",
        12,
    ],
)
def test_names_stay_valid_with_any_input(value: object) -> None:
    """Prefect names the run before the flow checks its parameters: anything may come in."""
    for flow in ("topup-standard", "submit-constants", "backfill", "available-dates"):
        params = {
            "round": value,
            "date": value,
            "workflow": value,
            "dates": value if isinstance(value, str) else None,
        }
        name = flow_run_name(flow, params, None)
        assert VALID_NAME.fullmatch(name), (flow, value, name)


def test_tags_are_one_round_and_one_date_whoever_adds_them() -> None:
    existing = ["topup", "round:round17", "facade-user:ann", "round:round18", "topup"]
    once = run_tags(existing, round="round18", date="250624")
    assert once == ["topup", "facade-user:ann", "round:round18", "date:250624"]
    assert run_tags(once, round="round18", date="250624") == once  # idempotent (a retry)
    assert run_tags(once, round="round18") == ["topup", "facade-user:ann", "round:round18"]
    tagged = with_workflow_tag([*once, "workflow:topup-standard@1.1.0"], "workflow:x@1.2.0")
    assert tagged == [*once, "workflow:x@1.2.0"]
    assert with_workflow_tag(tagged, "workflow:x@1.2.0") == tagged


def test_task_runs_are_named_by_label_and_title() -> None:
    standard = load("topup-standard", "1.2.0")
    names = {s.id: task_run_name(s.label, s.title, s.tasks[0], s.tasks) for s in standard.steps}
    assert names["step1_4"] == "1.4 Merge the interval plots into a PDF and download it"
    # Prefect formats a string name with the task's parameters: braces are doubled
    assert names["step2_2"].format() == "2.2 Merge the ntuples (mergeHist.sh) into hist{run}.root"
    (step8,) = load("submit-constants").steps
    parts = [task_run_name(step8.label, step8.title, t, step8.tasks) for t in step8.tasks]
    assert parts[:3] == ["8 run range", "8.1 dry run", "8.1 database submission"]
    assert task_of("step1_4-1a2b3c4d") == "step1_4"
    assert task_of("step8_1_submit-ffee") == "step8_1_submit"


def test_a_pause_says_which_decision_waits() -> None:
    standard = load("topup-standard", "1.2.0").steps
    submit = load("submit-constants").steps
    cases = [
        ("step7-approve", standard, "step 7 reset approval"),
        ("step7-verify-2", standard, "step 7 verification (date not verified)"),
        ("step1-3-ist-101", standard, "step 1.3 IST decision"),
        ("step1-1-manual-1", standard, "step 1.1 decision on an error"),
        ("step7-outage-1", standard, "step 7 decision after losing the site"),
        ("step8-approve-2", submit, "step 8.2 database submission approval"),
        ("step8-range-1", submit, "step 8 run range decision"),
        ("step8-8-3-again-7", submit, "step 8.3 decision on submitting again"),
        ("step8-1-submit-manual-1", submit, "step 8.1 database submission: decision on an error"),
        ("step1-3-manual-1", [], "step 1.3 decision on an error"),  # without the definition
        ("odd-key", [], "decision (odd-key)"),
    ]
    for key, steps, text in cases:
        assert waiting_for(key, steps) == text, key
