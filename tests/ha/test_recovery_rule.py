"""The crashed-run recovery rule (deployments/recovery.py ``decide``): which Crashed runs are
rescheduled without a person. Pure: real Prefect state and flow-run objects, no server."""

from __future__ import annotations

from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Crashed, Failed, Paused, Running, Suspended

from deployments.recovery import (
    ATTEMPTS_LABEL,
    IRREVERSIBLE_MARKER,
    RecoverySettings,
    decide,
    zombie_automation,
)

SETTINGS = RecoverySettings(max_attempts=2)


def crashed_run(tags: list[str] | None = None, attempts: int | None = None) -> FlowRun:
    labels = {ATTEMPTS_LABEL: attempts} if attempts is not None else {}
    return FlowRun(
        id=uuid4(),
        name="brave-otter",
        flow_id=uuid4(),
        tags=tags or [],
        labels=labels,
        state=Crashed(message="No heartbeat for 90s"),
    )


def test_a_crashed_standard_run_is_rescheduled_as_attempt_one() -> None:
    d = decide(crashed_run(), "topup-standard", [Running()], ["step1_1-abc"], SETTINGS)
    assert d.recover and d.attempt == 1


def test_attempts_are_bounded() -> None:
    assert decide(crashed_run(attempts=1), "backfill", [], [], SETTINGS).attempt == 2
    d = decide(crashed_run(attempts=2), "backfill", [], [], SETTINGS)
    assert not d.recover and "gave up after 2" in d.reason


def test_only_crashed_runs() -> None:
    run = crashed_run()
    run.state = Failed(message="boom")
    assert not decide(run, "topup-standard", [], [], SETTINGS).recover


@pytest.mark.parametrize(
    ("flow", "tags", "states", "tasks", "why"),
    [
        ("submit-constants", [], [], [], "irreversible"),
        ("topup-standard", ["irreversible"], [], [], "tagged irreversible"),
        (
            "topup-standard",
            [],
            [Running(message=f"Step 8: {IRREVERSIBLE_MARKER.upper()} (sub_switch 1)")],
            [],
            "irreversible step was started",
        ),
        ("topup-standard", [], [], ["step8_3_submit-1f2"], "step8_3_submit"),
        ("topup-standard", [], [], ["step8_1_submit-0a9"], "step8_1_submit"),
        ("topup-standard", [], [], ["step8_2_submit-77c"], "step8_2_submit"),
    ],
)
def test_never_a_database_submission(
    flow: str, tags: list[str], states: list, tasks: list[str], why: str
) -> None:
    """The submit-constants flow, an 'irreversible' tag, a state message saying an
    irreversible step started (anywhere in the history), or a started submission task: never
    rescheduled automatically, whatever the attempt count."""
    d = decide(crashed_run(tags=tags), flow, states, tasks, SETTINGS)
    assert not d.recover and why in d.reason


def test_a_run_suspended_by_an_operator_is_left_alone() -> None:
    """A suspended run's process ends on purpose; Crashed after it is not a crash to repair."""
    d = decide(crashed_run(), "topup-standard", [Running(), Suspended()], [], SETTINGS)
    assert not d.recover and "suspended" in d.reason
    # An in-process pause whose process died is recovered (it asks its question again).
    assert decide(crashed_run(), "topup-standard", [Running(), Paused()], [], SETTINGS).recover


def test_other_flows_are_left_alone() -> None:
    assert not decide(crashed_run(), "available-dates", [], [], SETTINGS).recover


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOPUP_RECOVERY_IRREVERSIBLE_FLOWS", "submit-constants, db-upload")
    monkeypatch.setenv("TOPUP_RECOVERY_MAX_ATTEMPTS", "5")
    s = RecoverySettings()
    assert s.irreversible_flows == ["submit-constants", "db-upload"] and s.max_attempts == 5
    assert not decide(crashed_run(), "db-upload", [], [], s).recover
    with pytest.raises(ValueError):
        RecoverySettings(max_attempts=0)


def test_zombie_automation_shape() -> None:
    a = zombie_automation(RecoverySettings(zombie_seconds=60))
    assert a.trigger.posture == "Proactive" and a.trigger.within.total_seconds() == 60
    assert "prefect.flow-run.heartbeat" in a.trigger.after
    assert "prefect.flow-run.Suspended" in a.trigger.expect
    assert "prefect.flow-run.Paused" not in a.trigger.expect  # a dead paused process is seen
    assert a.actions[0].type == "change-flow-run-state"
