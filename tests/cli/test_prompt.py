"""`topup run` on a terminal: the run pauses for an operator and the CLI asks right there.

The CLI runs as a real child process on a pseudo-terminal (stdlib ``pty``), so rich sees a
terminal: live progress bars, and ``prompt_answer`` asking field by field on the paused
run's form. The flow runs on the session stack (deployment, worker, sim site over sshd); the
site's step-1 job of one run writes an IST that is not 15000000, so step 1.3 stops with a
manual error (1302) and pauses for ``continue`` / ``retry`` / ``abort``.

The simulated site gets a round of its own (round31, in no other test file) so that no other
test's run holds the round's slot (one active run per round) while this one works.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from sim.layout import DateSpec, RoundSpec
from tests.cli.helpers import cli_env, site_with_round
from tests.fixtures_stack import StackRuns
from tests.stack.helpers import SIM_FAST
from topup_cli.stack import PrefectStack
from topup_cli.waiting import waiting_runs

pytestmark = pytest.mark.slow

ROUND = "round31"
DATE = "240611"
RUNS = [81101, 81102, 81103]
ODD_RUN = RUNS[1]
REPO = Path(__file__).resolve().parents[2]
# Cursor movement, colours, OSC titles, charset and keypad switches rich writes to a terminal.
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]"
)
RUN_ID = re.compile(r"started flow run \S+ \(([0-9a-f-]{36})\)")
PAUSE_KEY = "step1-3-ist-1"


@pytest.fixture
def sim(site_root: Path) -> Iterator[Any]:
    with site_with_round(
        site_root, RoundSpec(name=ROUND, dates=[DateSpec(date=DATE, runs=RUNS)])
    ) as site:
        yield site


class Terminal:
    """A child process on a pseudo-terminal: what it wrote (ANSI codes stripped), and typing.

    Why a pty and not CliRunner: the prompt is only offered when ``console.is_terminal``, and
    rich decides that from the real stdout.
    """

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        master, slave = os.openpty()
        # 50 rows x 220 columns: one output line stays one line (no wrapping mid-pattern).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
        )
        os.close(slave)  # the child holds the only copy: its exit reads as EOF here
        self.master = master
        self.raw = b""
        self.pos = 0  # in ``text``: where the next expect() starts looking
        self.eof = False

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def _read(self, deadline: float) -> None:
        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every copy of the slave side is closed
            chunk = b""
        if not chunk:
            self.eof = True
        self.raw += chunk

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read until ``pattern`` shows up after the previous match; fail on EOF or timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = rx.search(self.text, self.pos)
            if found:
                self.pos = found.end()
                return found
            if self.eof or time.monotonic() > deadline:
                why = "the CLI ended" if self.eof else f"{timeout:.0f}s passed"
                raise AssertionError(
                    f"{why} before {pattern!r} appeared; its output:\n{self.text[-4000:]}"
                )
            self._read(deadline)

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")  # Enter, as a keyboard sends it

    def finish(self, timeout: float) -> int:
        """Read to the end of the output and return the exit code."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if time.monotonic() > deadline:
                raise AssertionError(f"the CLI did not end within {timeout:.0f}s:\n{self.text}")
            self._read(deadline)
        return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        os.close(self.master)


@pytest.fixture
def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = cli_env(tmp_path / "var")
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):
        env.pop(name, None)
    env.update(TERM="xterm-256color", COLUMNS="220", LINES="50")
    return env


def _run_on_terminal(
    stack: PrefectStack, site: str, env: dict[str, str], stack_runs: StackRuns
) -> tuple[Terminal, UUID]:
    """Start `topup run` for ROUND/DATE on a pty and return it with its flow run's id."""
    term = Terminal(
        [
            sys.executable,
            "-m",
            "topup_cli.main",
            "run",
            "--date",
            DATE,
            "--round",
            ROUND,
            "--workflow",
            "topup-standard-steps",  # steps 1.1-1.4: the pause at 1.3 is the point here
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
        ],
        env,
        REPO,
    )
    try:
        found = term.expect(RUN_ID.pattern, timeout=120)
    except BaseException:
        term.close()
        raise
    run_id = UUID(found.group(1))
    stack_runs.created.append(run_id)  # cancelled at teardown should the test fail
    return term, run_id


def _answer_action(term: Terminal, action: str, name: str, note: str, register: str = "") -> None:
    """Wait for the pause's prompts (no sleeps: each is read off the terminal) and answer.

    Step 1.3's IST question: decide (with the runs to register / exclude), retry or abort."""
    term.expect(rf"the run waits for you: {PAUSE_KEY}", timeout=300)
    # The form's description says what happened: the odd run and its three values.
    term.expect(rf"(?s){ODD_RUN}.*action \(.*\) \[decide/retry/abort/later\]", 30)
    term.type(action)
    term.expect(r"register_runs \(", timeout=30)
    term.type(register)
    term.expect(r"exclude_runs \(", timeout=30)
    term.type("")
    term.expect(r"name \(Who decides", timeout=30)
    term.type(name)
    term.expect(r"note \(Why", timeout=30)
    term.type(note)
    term.expect(rf"answered {PAUSE_KEY}: ", timeout=60)


def test_terminal_prompt_continue_completes_the_run(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    terminal_env: dict[str, str],
) -> None:
    sim.set_faults(**{**SIM_FAST, "ist": {str(ODD_RUN): 14000000}})
    term, run_id = _run_on_terminal(stack, stack_site, terminal_env, stack_runs)
    try:
        _answer_action(term, "decide", "bob", "checked the beam log", register=str(ODD_RUN))
        term.expect(r"flow run \S+: Completed", timeout=300)
        code = term.finish(timeout=60)
    finally:
        term.close()
    assert code == 0, term.text[-4000:]
    assert "Traceback" not in term.text

    run = stack_runs.read(run_id)
    assert run.state_name == "Completed", run.state
    # Step 1.3 failed once (the pause), then passed on "decide"; 1.4 ran after it.
    states = [
        (t.task_key.rsplit("-", 1)[0], t.state_name) for t in stack_runs.settled_task_runs(run_id)
    ]
    assert ("step1_3", "Failed") in states and ("step1_3", "Completed") in states, states
    assert ("step1_4", "Completed") in states, states
    # bob chose to register the odd run: it is in interval.txt, by his decision.
    interval = (sim.inj(ROUND) / "interval.txt").read_text().splitlines()
    assert f"{ODD_RUN} 15000000" in interval


def test_terminal_prompt_abort_cancels_the_run_with_the_reason(
    stack: PrefectStack,
    sim: Any,
    stack_site: str,
    stack_runs: StackRuns,
    terminal_env: dict[str, str],
) -> None:
    sim.set_faults(**{**SIM_FAST, "ist": {str(ODD_RUN): 14000000}})
    term, run_id = _run_on_terminal(stack, stack_site, terminal_env, stack_runs)
    try:
        # named by what it is from the start; `topup status` lists it with its date and the
        # decision that waits
        assert f"started flow run {ROUND}-{DATE}-topup-standard-steps-1.0.2 (" in term.text
        stack_runs.wait(run_id, lambda r: bool(r.state and r.state.is_paused()), what="Paused")
        (waiting,) = [w for w in waiting_runs(stack.api_url) if w.id == str(run_id)]
        assert (waiting.round, waiting.date, waiting.waits_for) == (
            ROUND,
            DATE,
            "step 1.3 IST decision",
        )
        _answer_action(term, "abort", "carol", "beam was off")
        final = term.expect(r"flow run \S+: Cancelled - (.*)", timeout=300)
        code = term.finish(timeout=60)
    finally:
        term.close()
    assert code == 1, term.text[-4000:]
    assert "aborted by carol at step 1.3" in final.group(1), final.group(0)

    run = stack_runs.read(run_id)
    assert run.state is not None and run.state.is_cancelled(), run.state
    assert "aborted by carol at step 1.3" in (run.state.message or "")
    assert "beam was off" in (run.state.message or "")
    names = {t.task_key.rsplit("-", 1)[0] for t in stack_runs.task_runs(run_id)}
    assert "step1_4" not in names  # nothing ran after the abort
