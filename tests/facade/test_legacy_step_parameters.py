"""Workflow details carry each step's legacy ``parameters`` mapping (legacy_api.md §1.14,
§4.2): ``{function argument: task parameter}``, derived from what the flow really passes."""

from __future__ import annotations

from tests.facade.served import Served


def test_step_parameter_mappings_as_the_legacy_catalog_had_them(offline_facade: Served) -> None:
    with offline_facade.client("alice") as c:
        dates = c.get("/api/workflows/get_available_dates_workflow").json()["workflow"]
        steps = c.get("/api/workflows/topup_standard_steps_workflow").json()["workflow"]
        standard = c.get("/api/workflows/topup-standard").json()["workflow"]
    step0, step1 = dates["steps"]
    # §4.2: step0 maps include_processed, sort_order, round (identity)
    assert {"include_processed", "sort_order", "round"} <= set(step0["parameters"])
    assert all(k == v for k, v in step0["parameters"].items())
    assert "date" not in step1["parameters"]  # the placeholder step has no date
    by_id = {s["id"]: s for s in steps["steps"]}
    # §4.2: step1_1 date, round, submit_job, max_wait_minutes; step1_3 the IST check switch
    assert {"date", "round", "submit_job", "max_wait_minutes"} <= set(
        by_id["step1_1"]["parameters"]
    )
    assert {"date", "round"} <= set(by_id["step1_2"]["parameters"])
    assert "submit_job" not in by_id["step1_2"]["parameters"]
    assert by_id["step1_3"]["parameters"]["check_ist"] == "check_ist"
    # every value names a parameter of the workflow; fixed options are shown apart
    names = set(steps["parameters_schema"]["properties"])
    for s in steps["steps"]:
        assert set(s["parameters"].values()) <= names, s
    shield = next(s for s in standard["steps"] if s["id"] == "step4_1")
    assert shield["options"]["check"] is True and "check" not in shield["parameters"]
    # step 7 takes no submit_job: only what its task accepts is mapped
    reset = next(s for s in standard["steps"] if s["id"] == "step7")
    assert "submit_job" not in reset["parameters"] and reset["parameters"]["date"] == "date"
