"""`topup-sim`: build, faults, status, and up/down with the real sshd pair."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.site import SimSite
from sim.sshd import SshPair, ssh_banner
from steps.config import SiteSettings
from tests.sim.test_site_helpers import wait_for

runner = CliRunner()


@pytest.fixture
def root() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="topup-cli-", dir="/tmp"))
    parent.chmod(0o755)
    try:
        yield parent / "site"
    finally:
        if (parent / "site/.sim/layout.json").exists():
            runner.invoke(app, ["down", "--root", str(parent / "site")])
        shutil.rmtree(parent, ignore_errors=True)


def test_build_faults_status(root: Path) -> None:
    res = runner.invoke(app, ["build", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert (root / ".sim/layout.json").is_file()
    res = runner.invoke(
        app,
        ["faults", "--root", str(root), "--set", "job_seconds=0.5", "--set", 'fail={"1": [85383]}'],
    )
    assert res.exit_code == 0, res.output
    faults = SimSite.open(root).faults()
    assert faults.job_seconds == 0.5 and faults.fail == {"1": [85383]}
    bad = runner.invoke(app, ["faults", "--root", str(root), "--set", "nonsense=1"])
    assert bad.exit_code != 0
    res = runner.invoke(app, ["faults", "--root", str(root), "--reset"])
    assert SimSite.open(root).faults().job_seconds == 0.2
    res = runner.invoke(app, ["status", "--root", str(root)])
    assert res.exit_code == 0
    assert "sshd: not started" in res.output and "submissions: 0" in res.output
    missing = runner.invoke(app, ["status", "--root", str(root.parent / "nothing")])
    assert missing.exit_code == 1


def test_up_connect_down(root: Path) -> None:
    res = runner.invoke(app, ["up", "--root", str(root)])
    assert res.exit_code == 0, res.output
    site_json = root / ".sim/site.json"
    assert str(site_json) in res.output
    settings = SiteSettings(**json.loads(site_json.read_text()))
    assert settings.transport == "ssh" and settings.jump is not None
    assert settings.topup_root == str(root / "besfs5/groups/cal/topup")

    # through the jump host to the login node, as the steps connect
    assert settings.jump.password is not None and settings.login.password is not None
    known = settings.known_hosts_file
    jump = paramiko.SSHClient()
    jump.load_host_keys(str(known))
    jump.set_missing_host_key_policy(paramiko.RejectPolicy())
    jump.connect(
        settings.jump.host,
        settings.jump.port,
        settings.jump.user,
        password=settings.jump.password.get_secret_value(),  # passwords by default, as IHEP
        allow_agent=False,
        look_for_keys=False,
    )
    login = paramiko.SSHClient()
    try:
        channel = jump.get_transport().open_channel(  # type: ignore[union-attr]
            "direct-tcpip", (settings.login.host, settings.login.port), ("127.0.0.1", 0)
        )
        login.load_host_keys(str(known))
        login.set_missing_host_key_policy(paramiko.RejectPolicy())
        login.connect(
            settings.login.host,
            settings.login.port,
            settings.login.user,
            password=settings.login.password.get_secret_value(),
            sock=channel,
            allow_agent=False,
            look_for_keys=False,
        )
        command = (
            f"cd {settings.topup_root}/round18/DataValid/InjSigTimeCal && "
            f"source {settings.env_script} && ./genJob.sh 250626"
        )
        _, stdout, _ = login.exec_command(command, timeout=30)
        out = stdout.read().decode()  # returns when the command ends: jobs do not hold it
        assert stdout.channel.recv_exit_status() == 0
        assert out.splitlines()[-2:] == ["Total = 3 files", "DONE"]
    finally:
        login.close()
        jump.close()
    site = SimSite.open(root)
    assert [s["owner"] for s in site.submissions()] == ["topup"] * 3

    def listeners_only() -> bool:  # the closed connection's sshd may still be exiting
        status = runner.invoke(app, ["status", "--root", str(root)])
        return "sshd: 2 process(es)" in status.output

    wait_for(listeners_only)

    down = runner.invoke(app, ["down", "--root", str(root)])
    assert down.exit_code == 0, down.output
    assert "0 left" in down.output
    assert site.tree_processes() == []
    assert site.active_jobs() == []


def test_net_faults_on_the_running_pair(root: Path) -> None:
    """`topup-sim net`: SFTP cut tokens left for the login node; an outage of the jump host
    (nothing listening: connects refused) that ends with the host back on its port."""
    assert runner.invoke(app, ["up", "--root", str(root)]).exit_code == 0
    try:
        ports = json.loads((root / ".sim/sshd.json").read_text())
        res = runner.invoke(
            app, ["net", "--root", str(root), "--sftp-cut", "4000", "--downloads", "2"]
        )
        assert res.exit_code == 0, res.output
        assert SshPair(workdir=root / ".sim/sshd").sftp_cuts_left() == 2
        seen_down: list[bool] = []

        def probe() -> None:
            wait_for(lambda: ssh_banner(ports["jump"], 0.2) is None)
            seen_down.append(True)

        watcher = threading.Thread(target=probe)
        watcher.start()
        res = runner.invoke(app, ["net", "--root", str(root), "--outage", "jump", "--seconds", "1"])
        watcher.join()
        assert res.exit_code == 0, res.output
        assert "jump host back" in res.output and seen_down == [True]
        assert ssh_banner(ports["jump"]) is not None
        bad = runner.invoke(app, ["net", "--root", str(root), "--outage", "mars"])
        assert bad.exit_code == 2 and "jump or login" in bad.output
    finally:
        runner.invoke(app, ["down", "--root", str(root)])
