"""Request bodies (pydantic, validated at the edge) and the OpenAPI examples of every route.

Why examples live here: /docs is how client authors learn the contract; each route points at
one example so the documentation and the tests describe the same shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StatusName = Literal["pending", "running", "pausing", "paused", "success", "failed", "cancelled"]
LevelName = Literal["debug", "info", "warning", "error"]

TASK_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "user_id": "user123",
    "workflow_id": 1,
    "workflow_name": "topup-standard",
    "workflow_version": "1.0.0",
    "task_name": "topup 250624",
    "date_param": "250624",
    "status": "running",
    "progress_percentage": 23,
    "current_step": "step2_1",
    "pause_at_step": None,
    "resume_from_step": None,
    "error_message": None,
    "created_at": "2026-03-07T08:39:46.952644",
    "started_at": "2026-03-07T08:39:50.101010",
    "completed_at": None,
    "estimated_completion_time": None,
    "flow_run_id": "0b7f3c9e-5a51-4d0e-9d43-2f3c7b0e8f11",
    "state_name": "Running",
    "waiting_for_input": False,
}
EXECUTION_EXAMPLE: dict[str, Any] = {
    "id": 100001,
    "task_id": 1,
    "step_name": "step1_1",
    "step_display_name": "First-pass jobs (genJob.sh, boss.condor)",
    "step_label": "1.1",
    "step_order": 1,
    "status": "success",
    "start_time": "2026-03-07T08:39:51.000000",
    "end_time": "2026-03-07T08:55:46.000000",
    "duration_seconds": 955,
    "retry_count": 0,
    "output_summary": "19 runs complete",
    "error_details": None,
    "error_code": None,
    "step_result_json": {
        "step_name": "step1_1",
        "date": "250624",
        "total_runs": 19,
        "complete_runs": [85421, 85422],
        "incomplete_runs": [],
        "elapsed_time": 955.0,
        "runs_complete": [85421, 85422],
        "runs_incomplete": [],
        "outcome": "success",
        "error_code": None,
    },
    "console_output": "submitting 19 jobs\n19 runs complete",
    "task_run_id": "5d1c2b9a-0d7e-4e55-8a2b-1b9d0c6f7a21",
}
LOG_EXAMPLE: dict[str, Any] = {
    "id": "7c0d4b8e-2f6a-4c1e-9b3d-5a7e9f1c2d30",
    "task_id": 1,
    "execution_id": 100001,
    "level": "info",
    "message": "19 runs complete",
    "timestamp": "2026-03-07T08:55:46.000000",
    "source": "prefect.task_runs",
}


def example(body: dict[str, Any], description: str = "Success") -> dict[int | str, Any]:
    return {"description": description, "content": {"application/json": {"example": body}}}


def error_example(text: str) -> dict[str, Any]:
    return {"success": False, "error": text}


class CreateTaskBody(BaseModel):
    """``POST /api/tasks``. ``user_id`` may be omitted: the token says who you are."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "user_id": "user123",
                    "workflow_name": "topup_standard_workflow",
                    "task_name": "topup 250624",
                    "parameters": {
                        "user_id": "user123",
                        "date_param": "250624",
                        "round": "round18",
                        "max_wait_minutes": 25,
                    },
                }
            ]
        },
    )

    workflow_name: str = Field(min_length=1, max_length=128)
    user_id: str | int | None = Field(None, description="Legacy; must match the token's user")
    workflow_version: str | None = Field(None, max_length=32, description="Latest if omitted")
    task_name: str | None = Field(None, min_length=1, max_length=256)
    parameters: dict[str, Any] = Field(default_factory=dict)


class ResumeBody(BaseModel):
    """``POST /api/tasks/<id>/resume``; every field is optional."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"parameters": {"max_wait_minutes": 40}},
                {"retry_from_step": "step2_1"},
                {"decision": "continue", "note": "IST checked by hand"},
                {"decision": "approve", "note": "reset reviewed"},
                {"decision": "submit_again", "inputs": {"earlier_submission": 3}},
            ]
        },
    )

    parameters: dict[str, Any] = Field(default_factory=dict)
    retry_from_step: str | None = Field(None, max_length=32)
    decision: str | None = Field(
        None,
        pattern=r"^[a-z_]{1,32}$",
        description="For a run waiting for an operator, one of the task's "
        "``waiting_for.options`` (continue / retry / abort / approve / skip; the gates and "
        "the database submission also ask accept / recheck / decide / set_aside / include / "
        "submit_again / submitted / failed); recorded under the authenticated user's name",
    )
    note: str | None = Field(None, max_length=2000, description="Recorded with the decision")
    inputs: dict[str, str | int | bool] = Field(
        default_factory=dict,
        max_length=8,
        description="Other fields of the form the run waits for (its ``waiting_for.fields``), "
        "e.g. exclude_runs, register_runs, earlier_submission, submission_id",
    )


class ValidateBody(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"parameters": {"date": "250624", "round": "round18"}}]},
    )

    parameters: dict[str, Any] = Field(default_factory=dict)


class PreferencesBody(BaseModel):
    """Fields given replace the stored ones; fields omitted stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "default_workflow": "topup-standard",
                    "parameter_defaults": {"topup-standard": {"round": "round18"}},
                    "notification_settings": {"on_failure": True, "email": "a@ihep.ac.cn"},
                }
            ]
        },
    )

    default_workflow: str | None = Field(None, max_length=128)
    parameter_defaults: dict[str, dict[str, Any]] | None = None
    notification_settings: dict[str, Any] | None = None
