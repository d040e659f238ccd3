"""`topup up --sim` in its own process, `topup status` from another, `topup down`: every
process of the stack (server, worker, facade, sshd pair) is gone afterwards."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.site import SimSite
from sim.sshd import SshPair
from tests.cli.helpers import cli_env, data_dir, processes_using, wait_for
from topup_cli.main import app
from topup_cli.processes import descendants
from topup_cli.state import read_state

pytestmark = pytest.mark.slow

runner = CliRunner()
EXPECTED = {"prefect-server", "topup-worker-1", "facade", "sshd-jump", "sshd-login"}


@pytest.fixture
def data() -> Iterator[Path]:
    path = data_dir()
    try:
        yield path
    finally:
        leftovers = processes_using(path)
        if leftovers:  # a failed test: don't leave the stack running for the next one
            runner.invoke(app, ["down", "--data-dir", str(path)])
        shutil.rmtree(path.parent, ignore_errors=True)


def test_up_status_down(data: Path) -> None:
    env = cli_env(data)
    log = data.parent / "up.log"
    began = time.monotonic()
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "topup_cli.main", "up", "--sim", "--no-ui"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:

        def healthy() -> dict | None:
            assert up.poll() is None, log.read_text()
            res = runner.invoke(app, ["status", "--json", "--data-dir", str(data)])
            report = json.loads(res.output)
            return report if res.exit_code == 0 and report["all_healthy"] else None

        report = wait_for(healthy, 400, "all components healthy")
        print(f"\ntopup up -> all healthy in {time.monotonic() - began:.1f}s")
        comps = {c["name"]: c for c in report["components"]}
        assert EXPECTED <= set(comps)
        assert all(c["alive"] and c["healthy"] for c in comps.values())
        assert comps["facade"]["url"].endswith("/docs")
        assert report["waiting"] == []  # no run waits for an operator yet

        # The human view shows the same, and the site file reaches the flow runs.
        res = runner.invoke(app, ["status", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert "facade" in res.output and "sshd-login" in res.output
        assert "no run waits for an operator" in res.output
        assert (data / "sites" / "sim.json").is_file()

        # A second `up` on the same data dir refuses (and leaves the running one alone).
        second = runner.invoke(app, ["up", "--data-dir", str(data)])
        assert second.exit_code == 1 and "already running" in second.output
        assert (data / "stack.json").is_file()

        state = read_state(data / "stack.json")
        assert state is not None
        pids = {c.pid for c in state.components}
        pids |= {pid for c in state.components for pid, _ in descendants(c.pid)}
        pair = SshPair(workdir=data / "sim/.sim/sshd", stop_at_exit=False)
        assert pair.processes()

        res = runner.invoke(app, ["down", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert up.wait(timeout=60) == 0, log.read_text()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)

    assert not (data / "stack.json").exists()
    assert not (data / "sites" / "sim.json").exists()
    still = [p for p in pids if Path(f"/proc/{p}").exists() and _not_zombie(p)]
    assert still == []
    assert pair.processes() == []
    assert SimSite.open(data / "sim").tree_processes() == []
    assert processes_using(data) == []
    res = runner.invoke(app, ["status", "--data-dir", str(data)])
    assert res.exit_code == 1 and "no stack" in res.output


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"
