"""`topup up --sim` in its own process, `topup status` from another, `topup down`: every
process of the stack (server, worker, facade, sshd pair) is gone afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.states import Cancelled, Scheduled
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
        listed = [c.pid for c in state.components if c.pid is not None]
        pids = set(listed) | {pid for p in listed for pid, _ in descendants(p)}
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


def test_no_stack_refuses_instead_of_a_default_port(data: Path) -> None:
    """No state file and no PREFECT_API_URL: the commands say how to start a stack, exit 1,
    and never knock on the configured port (where someone else's server may answer)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        env = {**cli_env(data), "TOPUP_STACK_PREFECT_PORT": str(port)}
        for args in (["run", "--date", "250624", "--no-watch"], ["logs", "some-run"]):
            res = runner.invoke(app, [*args, "--data-dir", str(data)], env=env)
            assert res.exit_code == 1, res.output
            assert "no stack is running" in res.output
            assert "topup up" in res.output and str(data.resolve()) in res.output
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody tried the port
    res = runner.invoke(app, ["status", "--data-dir", str(data)], env=env)
    assert res.exit_code == 1
    assert str(data.resolve()) in res.output and "topup up --sim" in res.output


def test_up_sim_restarts_a_hung_sshd_and_logs_notifications(data: Path) -> None:
    """`topup up --sim`: status names the data dir and the local notification log; a login
    sshd stopped with SIGSTOP (pid alive, port open) is found by its failed SSH handshake and
    restarted, with the reason, in the `topup up` window; a flow run's abort notification
    lands in the log file through the stack's own webhook receiver; a stopped Prefect server
    is found by its health route and restarted on the same port."""
    env = {
        **cli_env(data),
        "TOPUP_STACK_HEALTH_SECONDS": "1",
        "TOPUP_STACK_HEALTH_TIMEOUT": "3",
        "TOPUP_STACK_UNHEALTHY_CHECKS": "2",
    }
    log = data.parent / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "topup_cli.main", "up", "--sim", "--no-ui"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stopped: int | None = None
    try:

        def healthy() -> dict | None:
            assert up.poll() is None, log.read_text()
            res = runner.invoke(app, ["status", "--json", "--data-dir", str(data)])
            report = json.loads(res.output)
            return report if res.exit_code == 0 and report["all_healthy"] else None

        report = wait_for(healthy, 400, "all components healthy")
        notify_log = data.resolve() / "logs" / "notifications.log"
        assert report["notifications_log"] == str(notify_log)
        assert "notify-receiver" in {c["name"] for c in report["components"]}
        res = runner.invoke(app, ["status", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        flat = " ".join(res.output.split())
        assert f"data dir {data.resolve()}" in flat
        assert f"notifications on: local log {notify_log}" in flat

        # A hung login node: stopped, so its pid lives and the kernel still accepts on its port.
        state = read_state(data / "stack.json")
        assert state is not None
        login = state.component("sshd-login")
        assert login is not None
        stopped = login.pid
        os.kill(stopped, signal.SIGSTOP)
        wait_for(lambda: "sshd-login restarted" in log.read_text(), 120, "sshd-login restart")
        text = log.read_text()
        assert "sshd-login is unhealthy: no SSH banner on port" in text
        after = wait_for(healthy, 120, "healthy again after the restart")
        new = {c["name"]: c for c in after["components"]}["sshd-login"]
        assert new["pid"] != stopped and new["url"] == login.url  # same port, new process
        assert not Path(f"/proc/{stopped}").exists() or not _not_zombie(stopped)
        stopped = None

        # The facade dies while another process takes its port for a moment: its restart
        # fails, is said, and is tried again after a pause; the stack does not give up.
        facade = state.component("facade")
        assert facade is not None and facade.pid is not None
        port = urlsplit(facade.url).port
        assert port is not None
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            os.kill(facade.pid, signal.SIGKILL)
            wait_for(lambda: _bound(holder, port), 30, "the facade's port", interval=0.01)
            holder.listen()
            wait_for(lambda: "facade did not start again" in log.read_text(), 120, "a failed start")
        finally:
            holder.close()
        after = wait_for(healthy, 120, "healthy again after the failed restart")
        new = {c["name"]: c for c in after["components"]}["facade"]
        assert new["pid"] != facade.pid and new["url"] == facade.url
        assert "giving up" not in log.read_text()

        # A run of a notifying flow is aborted: the server's automation posts to the
        # receiver, which writes the notification to the log file. Scheduled far ahead so
        # that the worker leaves it alone.
        with SyncPrefectClient(api=state.api_url) as client:
            dep = client.read_deployment_by_name("topup-standard/topup-standard-1.2.0")
            run = client.create_flow_run_from_deployment(
                dep.id,
                parameters={"date": "250624", "round": "round18"},
                state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=1)),
            )
            client.set_flow_run_state(run.id, Cancelled(message="aborted by pytest"), force=True)

        def notified() -> list[dict]:
            if not notify_log.is_file():
                return []
            lines = [json.loads(line) for line in notify_log.read_text().splitlines()]
            return [n for n in lines if f"flow_run_id: {run.id}" in n["notification"]["body"]]

        (entry,) = wait_for(notified, 120, "the abort notification in the log file")
        assert "aborted by pytest" in entry["notification"]["subject"]

        # A hung Prefect server (stopped: pid alive, port open) is restarted on its port too.
        server = state.component("prefect-server")
        assert server is not None
        stopped = server.pid
        os.kill(stopped, signal.SIGSTOP)
        wait_for(lambda: "prefect-server restarted" in log.read_text(), 300, "server restart")
        assert f"prefect-server is unhealthy: no answer from {server.health_url}" in log.read_text()
        after = wait_for(healthy, 300, "healthy again after the server restart")
        new = {c["name"]: c for c in after["components"]}["prefect-server"]
        assert new["pid"] != stopped and new["url"] == server.url
        stopped = None

        res = runner.invoke(app, ["down", "--data-dir", str(data)])
        assert res.exit_code == 0, res.output
        assert up.wait(timeout=60) == 0, log.read_text()
    finally:
        if stopped is not None and Path(f"/proc/{stopped}").exists():
            os.kill(stopped, signal.SIGCONT)
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=120)
    assert processes_using(data) == []


def _bound(sock: socket.socket, port: int) -> bool:
    """Bind ``sock`` to ``port`` on loopback once its owner released it."""
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True
