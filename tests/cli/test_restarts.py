"""The supervisor's restart policy (topup_cli/restarts.py) on its own clock: a restart that
fails is said and tried again after a growing pause, and only a crash loop within the window
ends the stack. The supervisor living through a real failed restart is in test_up_down.py."""

from __future__ import annotations

import threading

import pytest

from topup_cli.health import Probe
from topup_cli.restarts import (
    BACKOFF_SECONDS,
    MAX_RESTARTS,
    RESTART_WINDOW_SECONDS,
    Check,
    Exited,
    RestartPolicy,
)
from topup_cli.stack import StackError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Part:
    """A part whose first ``failing`` starts fail the way a real one does (StackError with
    the new process's log tail on the following lines)."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failing:
            raise StackError("facade exited:\nOSError: [Errno 98] address already in use")


def policy(clock: Clock) -> tuple[RestartPolicy, list[str]]:
    said: list[str] = []
    return RestartPolicy(2, said.append, clock=clock), said


def test_a_failed_restart_is_said_and_tried_again_after_its_pause() -> None:
    clock = Clock()
    pol, said = policy(clock)
    part = Part(failing=2)
    exited = [Exited("facade", "the facade exited; restarting it", part.start, "facade back")]

    assert pol.restart_exited(exited)  # no StackError: the stack stays up
    assert part.starts == 1
    assert said[-1] == "facade did not start again: facade exited; trying again in 1s"
    assert "Errno" not in said[-1]  # one line; the log tail is in the part's own log

    clock.now += BACKOFF_SECONDS[0] / 2
    assert not pol.restart_exited(exited)  # within its pause: not tried
    assert part.starts == 1

    clock.now += BACKOFF_SECONDS[0]
    pol.restart_exited(exited)
    assert part.starts == 2
    assert said[-1].endswith(f"trying again in {BACKOFF_SECONDS[1]:.0f}s")

    clock.now += BACKOFF_SECONDS[1]
    pol.restart_exited(exited)
    assert part.starts == 3
    assert said[-1] == "facade back"


def test_a_crash_loop_within_the_window_ends_the_stack() -> None:
    clock = Clock()
    pol, said = policy(clock)
    part = Part(failing=100)
    exited = [Exited("prefect-api-1", "prefect-api-1 exited", part.start)]
    for pause in BACKOFF_SECONDS:
        pol.restart_exited(exited)
        clock.now += pause
    assert part.starts == MAX_RESTARTS
    with pytest.raises(StackError, match=r"prefect-api-1 keeps exiting \(5 restarts within"):
        pol.restart_exited(exited)
    assert part.starts == MAX_RESTARTS  # the one beyond the budget is not started


def test_restarts_spread_over_more_than_the_window_never_end_the_stack() -> None:
    """A part killed now and then over weeks (a deployment, the OOM killer) is always
    restarted: only restarts within the window count."""
    clock = Clock()
    pol, _ = policy(clock)
    part = Part(failing=0)
    exited = [Exited("facade-1", "facade-1 exited", part.start)]
    for _ in range(3 * MAX_RESTARTS):
        pol.restart_exited(exited)
        clock.now += RESTART_WINDOW_SECONDS / (MAX_RESTARTS - 1)
    assert part.starts == 3 * MAX_RESTARTS


def test_an_unhealthy_part_whose_restart_fails_is_left_its_pause() -> None:
    clock = Clock()
    pol, said = policy(clock)
    part = Part(failing=1)
    probes: list[str] = []

    def probe() -> Probe:
        probes.append("facade")
        return Probe(False, "no answer")

    checks = [Check("facade", probe, part.start)]
    stop = threading.Event()
    pol.restart_unhealthy(checks, stop)
    pol.restart_unhealthy(checks, stop)  # the second failed probe in a row: restart
    assert part.starts == 1
    assert said[-1].startswith("facade did not start again")
    pol.restart_unhealthy(checks, stop)  # within the pause: not even probed
    assert len(probes) == 2
    clock.now += BACKOFF_SECONDS[0]
    pol.restart_unhealthy(checks, stop)
    pol.restart_unhealthy(checks, stop)
    assert part.starts == 2
    assert said[-1] == "facade restarted"


def test_a_start_that_cannot_even_spawn_is_retried_like_any_failed_start() -> None:
    """An OSError from Popen (no file descriptors left, say) is a failed start too: said
    with its type, retried after the pause, and never taken for the supervisor's own end."""
    clock = Clock()
    pol, said = policy(clock)
    starts: list[int] = []

    def spawn() -> None:
        starts.append(1)
        if len(starts) == 1:
            raise OSError(24, "Too many open files")

    exited = [Exited("recovery", "the recovery loop exited; restarting it", spawn)]
    pol.restart_exited(exited)
    assert said[-1] == (
        "recovery did not start again: OSError: [Errno 24] Too many open files; trying again in 1s"
    )
    clock.now += BACKOFF_SECONDS[0]
    pol.restart_exited(exited)
    assert len(starts) == 2
