"""The operator's CLI (issue 14): `topup attach`, `topup retry`, `later`, wrapped titles and
a `--help` without Prefect's telemetry notice.

The terminal tests run the CLI as a real child process on a pseudo-terminal (as
tests/cli/test_prompt.py does) against the session stack and a simulated site over sshd:
step 1.3 of the steps-only workflow (1.1 - 1.4) pauses on an odd IST value. What stays on
the screen is read through ``pyte``, a terminal emulator: a line that a live display later
overwrites is gone from its screen even though its bytes were written.
"""

from __future__ import annotations

import io
import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pyte
import pytest
from prefect.client.schemas.objects import FlowRun
from rich.console import Console
from typer.testing import CliRunner

from flows.definitions import load
from flows.naming import task_of
from sim import users
from sim.layout import DateSpec, RoundSpec, default_layout
from sim.site import build_site
from tests.cli.helpers import cli_env
from tests.cli.test_prompt import RUN_ID, Terminal
from tests.conftest import SIM_USER
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.main import app
from topup_cli.progress import StepView, run_summary, step_bars
from topup_cli.stack import PrefectStack

REPO = Path(__file__).resolve().parents[2]
COLS, ROWS = 220, 50
# Rounds of this file only: no other test's run holds their slot.
ATTACH_ROUND, ATTACH_DATE, ATTACH_RUNS = "round32", "240612", [82101, 82102, 82103]
LATER_ROUND, LATER_DATE, LATER_RUNS = "round33", "240613", [83101, 83102, 83103]
runner = CliRunner()


def _pause_key(attempt: int) -> str:
    return f"step1-3-ist-{attempt}"


@pytest.fixture
def sim(site_root: Path) -> Iterator[Any]:
    """The default site plus this file's two rounds (as helpers.site_with_round, for two)."""
    base = default_layout()
    rounds = [
        RoundSpec(name=ATTACH_ROUND, dates=[DateSpec(date=ATTACH_DATE, runs=ATTACH_RUNS)]),
        RoundSpec(name=LATER_ROUND, dates=[DateSpec(date=LATER_DATE, runs=LATER_RUNS)]),
    ]
    site = build_site(site_root, base.model_copy(update={"rounds": [*base.rounds, *rounds]}))
    users.chown_tree(site_root, SIM_USER)
    try:
        yield site
    finally:
        site.stop_jobs()


@pytest.fixture
def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path / "var")
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):
        env.pop(name, None)
    env.update(TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "topup_cli.main", *args]


def _start_run(
    stack: PrefectStack, site: str, env: dict[str, str], round_: str, date: str
) -> Terminal:
    return Terminal(
        _cli(
            "run",
            "--date",
            date,
            "--round",
            round_,
            "--workflow",
            "topup-standard-steps",
            "--version",
            "1.0.2",
            "--site",
            site,
            "--poll-seconds",
            "0.2",
            "--max-wait-minutes",
            "1",
            "--timeout",
            "600",
            "--api-url",
            stack.api_url,
        ),
        env,
        REPO,
    )


def _screen(term: Terminal) -> str:
    """What a terminal of the same size shows now (the bytes played through an emulator)."""
    screen = pyte.Screen(COLS, ROWS)
    pyte.ByteStream(screen).feed(term.raw)
    return "\n".join(line.rstrip() for line in screen.display)


def _ist_prompt(term: Terminal, attempt: int, odd_run: int) -> None:
    """Wait for step 1.3's question of this attempt, its description rendered."""
    term.expect(rf"the run waits for you: {_pause_key(attempt)}", timeout=300)
    found = term.expect(r"(?s)(.*?)action \(.*\) \[decide/retry/abort/later\]", 60)
    shown = found.group(1)
    assert str(odd_run) in shown, shown
    # Markdown rendered: a heading without its '## ', a table without its '|---|' rule.
    assert "## Step" not in shown and "|---|" not in shown, shown


def _decide(term: Terminal, attempt: int, register: str, name: str, note: str) -> None:
    term.type("decide")
    for prompt, value in (
        ("register_runs", register),
        ("exclude_runs", ""),
        ("name", name),
        ("note", note),
    ):
        term.expect(rf"{prompt} \(", timeout=60)
        term.type(value)
    # The answer is one API call, but a busy SQLite server may make it wait (retries).
    term.expect(rf"answered {_pause_key(attempt)}: ", timeout=240)


def _paused(stack_runs: StackRuns, run_id: UUID, key: str) -> FlowRun:
    return stack_runs.wait(
        run_id,
        lambda r: (
            r.state is not None and r.state.is_paused() and r.state.state_details.pause_key == key
        ),
        timeout=300,
        what=f"Paused on {key}",
    )


@pytest.mark.slow
def test_attach_reattaches_to_a_paused_run_and_approves_it(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    terminal_env: dict[str, str],
) -> None:
    odd = ATTACH_RUNS[1]
    sim.set_faults(**{**SIM_FAST, "ist": {str(odd): 14000000}})
    first = _start_run(stack, stack_site, terminal_env, ATTACH_ROUND, ATTACH_DATE)
    try:
        run_id = UUID(first.expect(RUN_ID.pattern, timeout=120).group(1))
        stack_runs.created.append(run_id)  # cancelled at teardown should the test fail
        _ist_prompt(first, 1, odd)
        # Ctrl-C: the operator leaves the CLI (the signal a terminal sends its foreground
        # process; this pty is not the child's controlling terminal, so it is sent here).
        first.proc.send_signal(signal.SIGINT)
        first.expect(r"left flow run \S+ as it is \(Paused\); `topup attach \S+` comes back", 60)
        assert first.finish(timeout=60) == 130, first.text[-4000:]
    finally:
        first.close()
    assert "Traceback" not in first.text
    # Leaving the CLI leaves the run as it was: paused on the same question.
    run = _paused(stack_runs, run_id, _pause_key(1))

    # Meanwhile, in another shell, `topup logs -f` follows the same run to its end.
    follower = Terminal(
        _cli("logs", "-f", run.name, "--api-url", stack.api_url), terminal_env, REPO
    )
    try:
        follower.expect(rf"the run waits for operator input \({_pause_key(1)}\)", 120)
    except BaseException:
        follower.close()
        raise
    term = Terminal(_cli("attach", run.name, "--api-url", stack.api_url), terminal_env, REPO)
    try:
        term.expect(rf"attached to flow run {re.escape(run.name)} \({run_id}\): Paused", 120)
        _ist_prompt(term, 1, odd)
        _decide(term, 1, str(odd), "dave", "beam log checked")
        term.expect(rf"flow run {re.escape(run.name)}: Completed", timeout=300)
        code = term.finish(timeout=60)
    finally:
        term.close()
        try:
            logs_code = follower.finish(timeout=120)
        finally:
            follower.close()
    assert code == 0, term.text[-4000:]
    assert "Traceback" not in term.text
    # logs -f: the steps' own lines (topup.* loggers), before and after the pause, the
    # pause itself named, and the flow's last line once it ended (then it stops by itself).
    logs = follower.text
    assert logs_code == 0, logs
    assert re.search(r"1\.1 .{0,300}?\d+/\d+\s+runs\s+complete", logs, re.S), logs
    assert f"the run waits for operator input ({_pause_key(1)})" in logs, logs
    assert re.search(r"1\.4 .{0,300}?downloaded\s.*sha256\s+verified", logs, re.S), logs
    assert re.search(r"flow\s+Finished in state Completed", logs), logs
    assert logs.index(_pause_key(1)) < logs.index("sha256 verified")
    done = stack_runs.read(run_id)
    assert done.state_name == "Completed", done.state
    states = [(task_of(t.task_key), t.state_name) for t in stack_runs.settled_task_runs(run_id)]
    assert ("step1_4", "Completed") in states, states
    interval = (sim.inj(ATTACH_ROUND) / "interval.txt").read_text().splitlines()
    assert f"{odd} 15000000" in interval  # dave's decision, taken in the attached CLI


@pytest.mark.slow
def test_later_leaves_its_line_and_the_next_pause_asks_again(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    terminal_env: dict[str, str],
) -> None:
    odd = LATER_RUNS[0]
    sim.set_faults(**{**SIM_FAST, "ist": {str(odd): 14000000}})
    term = _start_run(stack, stack_site, terminal_env, LATER_ROUND, LATER_DATE)
    try:
        run_id = UUID(term.expect(RUN_ID.pattern, timeout=120).group(1))
        stack_runs.created.append(run_id)
        _ist_prompt(term, 1, odd)
        term.type("later")
        term.expect(rf"left {_pause_key(1)} for later; answer it in the Prefect UI", 60)

        # Someone answers that pause elsewhere (the UI does this same Prefect call):
        # retry step 1.3, which finds the odd value again and pauses a second time.
        _paused(stack_runs, run_id, _pause_key(1))
        with stack.sync_client() as client:
            result = client.resume_flow_run(
                run_id, run_input={"action": "retry", "name": "erin", "note": "re-run 1.3"}
            )
        assert result.status.value == "ACCEPT", result

        # The CLI asks again on the new pause: `later` did not turn its prompts off.
        _ist_prompt(term, 2, odd)
        screen = _screen(term)
        # ... and the "later" line is still on the screen, above the new question: the
        # live display that ran in between did not draw over it.
        assert f"left {_pause_key(1)} for later" in screen, screen
        assert screen.index(f"left {_pause_key(1)}") < screen.index(
            f"the run waits for you: {_pause_key(2)}"
        ), screen
        _decide(term, 2, str(odd), "erin", "registered after the re-run")
        term.expect(r"flow run \S+: Completed", timeout=300)
        code = term.finish(timeout=60)
    finally:
        term.close()
    assert code == 0, term.text[-4000:]
    assert stack_runs.read(run_id).state_name == "Completed"


@pytest.mark.slow
def test_retry_sends_a_failed_run_back_and_refuses_a_completed_one(
    stack: PrefectStack, sim: Any, stack_site: str, stack_runs: StackRuns
) -> None:
    sim.set_faults(**SIM_FAST)
    # A site file that does not exist yet: the run fails at its start, for real.
    late_site = f"{stack_site}-later"
    failed = stack_runs.start("available-dates/available-dates", round="round18", site=late_site)
    run = stack_runs.wait(failed.id)
    assert run.state_name == "Failed", run.state
    # The operator fixes the cause (the site file appears), then retries the same run.
    site_file = stack.sites_dir / f"{late_site}.json"
    site_file.write_text((stack.sites_dir / f"{stack_site}.json").read_text())
    site_file.chmod(0o600)
    try:
        res = runner.invoke(
            app, ["retry", run.name, "--timeout", "300", "--api-url", stack.api_url]
        )
        assert "Traceback" not in res.output
        assert f"flow run {run.name} ({run.id}): Failed -> Scheduled" in res.output, res.output
        assert res.exit_code == 0, res.output
        assert re.search(rf"flow run {re.escape(run.name)}: Completed", res.output), res.output
    finally:
        site_file.unlink(missing_ok=True)
    done = stack_runs.read(run.id)
    assert done.state_name == "Completed", done.state
    # Prefect keeps the retry in the run's history, with who asked for it.
    with stack.sync_client() as client:
        history = client.read_flow_run_states(run.id)
    assert any(
        s.name == "Scheduled" and "Retried from the CLI by" in (s.message or "") for s in history
    ), [(s.name, s.message) for s in history]

    refused = runner.invoke(app, ["retry", str(run.id), "--api-url", stack.api_url])
    assert refused.exit_code == 1, refused.output
    text = " ".join(refused.output.split())
    assert f"flow run {run.name} is Completed: only a Failed or Crashed run can be retried" in (
        text
    ), text
    assert stack_runs.read(run.id).state_name == "Completed"  # nothing was changed


@pytest.mark.slow
def test_retry_of_a_submission_run_needs_yes(
    stack: PrefectStack, sim: Any, stack_runs: StackRuns
) -> None:
    """A run of submit-constants may have reached the database: as for the crashed-run
    recovery, a person decides, so the retry asks for --yes first."""
    sim.set_faults(**SIM_FAST)
    started = stack_runs.start(
        "submit-constants/submit-constants", round="round18", site="no-such-site"
    )
    run = stack_runs.wait(started.id)
    assert run.state_name == "Failed", run.state
    res = runner.invoke(app, ["retry", run.name, "--api-url", stack.api_url])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "may already have submitted to the database" in text, text
    assert f"topup transcript {run.name}" in text and "--yes" in text, text
    assert stack_runs.read(run.id).state_name == "Failed"  # refused: left as it was

    res = runner.invoke(app, ["retry", run.name, "--yes", "--no-watch", "--api-url", stack.api_url])
    assert res.exit_code == 0, res.output
    assert "Failed -> Scheduled" in res.output, res.output
    # The worker runs it again: still no such site, so it fails again, with no submission.
    again = stack_runs.wait(
        run.id, lambda r: r.state is not None and r.state.is_final() and r.state.name != "Scheduled"
    )
    assert again.state_name == "Failed", again.state
    assert sim.db_ledger() == []


def test_help_shows_no_telemetry_notice(tmp_path: Path) -> None:
    """A fresh PREFECT_HOME on a terminal is when Prefect prints its telemetry notice on
    import; the project's commands turn it off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "TOPUP_")) and k != "DO_NOT_TRACK"
    }
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CI_NAME"):
        env.pop(name, None)
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="50")

    def on_terminal(argv: list[str], home: str) -> tuple[int, str]:
        term = Terminal(argv, {**env, "PREFECT_HOME": str(tmp_path / home)}, REPO)
        try:
            return term.finish(timeout=120), term.text
        finally:
            term.close()

    # Control: the same terminal and a fresh home make a bare Prefect import print it.
    _, plain = on_terminal([sys.executable, "-c", "import prefect"], "control")
    assert "anonymous usage" in plain, plain

    for argv, home in (
        (_cli("--help"), "module"),
        ([str(REPO / "scripts" / "topup"), "--help"], "wrapper"),
    ):
        code, text = on_terminal(argv, home)
        assert code == 0, text
        assert "Usage: " in text and "attach" in text and "retry" in text, text
        assert "anonymous usage" not in text and "telemetry" not in text.lower(), text


def test_step_titles_wrap_and_the_summary_names_the_run() -> None:
    """On a narrow terminal every step title is shown whole (wrapped, never cut) and the
    summary says what the operator needs, not a timing."""
    definition = load("topup-standard")
    steps = [StepView(s.id, s.label, s.title, list(s.tasks or [s.id])) for s in definition.steps]
    console = Console(width=80, file=io.StringIO(), color_system=None)
    progress, _ = step_bars(steps, console)
    console.print(progress.get_renderable())
    bars = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in bars
    shown = " ".join(bars.split())
    for step in steps:
        for word in step.title.split():
            assert word in shown, (step.title, bars)
    assert len(bars.splitlines()) > len(steps)  # the long titles took a second line

    run_id = uuid.uuid4()
    steps[0].states = {steps[0].tasks[0]: "Completed"}
    steps[1].states = {steps[1].tasks[0]: "Failed"}
    console = Console(width=100, file=io.StringIO(), color_system=None)
    console.print(run_summary(None, run_id, steps, f"http://ui/runs/flow-run/{run_id}"))
    summary = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"flow run {run_id}: ?" in summary
    assert "steps done: 1 of" in summary
    assert f"stopped at step {steps[1].label} {steps[1].title}: Failed" in summary
    assert f"Prefect UI: http://ui/runs/flow-run/{run_id}" in summary
    assert "first step seen" not in summary
