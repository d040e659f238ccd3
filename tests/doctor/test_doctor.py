"""``steps.doctor`` against the real sshd pair and a simulated site: every check passes (or
only warns) on a healthy site and fails on a fault made for it.

The faults are real (a missing script, a read-only control dir, a full file system, a wrong
host key, a logout reaper killing the session's processes), except the clock skew: the two
ends share one clock here, so that test hands the doctor a local clock 10 minutes ahead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim import users
from sim.sshd import SshPair
from steps.config import SiteSettings
from steps.doctor import DoctorOptions, DoctorReport, run_doctor
from steps.remote.site import RemoteSite
from tests.conftest import SIM_USER

FAST = {"probe_seconds": 1.0, "linger_seconds": 0.5, "timeout": 30.0}


def doctor(settings: SiteSettings, **options: Any) -> DoctorReport:
    return run_doctor(settings, "sim", DoctorOptions(**{**FAST, **options}))


def statuses(report: DoctorReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def leftovers(control_dir: Path) -> list[str]:
    return sorted(p.name for p in control_dir.iterdir()) if control_dir.exists() else []


def test_healthy_sim_is_usable(sim: Any, ssh_password_settings: SiteSettings) -> None:
    report = doctor(ssh_password_settings)
    got = statuses(report)
    assert report.usable, report.model_dump_json(indent=1)
    assert list(got) == [
        "hops", "paths", "tools", "write", "afs", "quota", "clock", "detached",
    ]  # fmt: skip
    for name in ("hops", "paths", "tools", "write", "quota", "clock", "detached"):
        assert got[name] == "pass", report.check(name)
    # hadd/root on the PATH of a plain exec, as on IHEP (the pair's dispatchers)
    assert any("hadd: " in e and "only after" not in e for e in report.check("tools").evidence)
    # The sim has no AFS: a warning that says so.
    assert got["afs"] == "warn" and "tokens" in report.check("afs").summary
    hops = report.check("hops").evidence
    assert any("jump" in e and "host key verified" in e for e in hops)
    assert "survived" in " ".join(report.check("detached").evidence)
    # Read-only: the scratch dir is gone, and the probe left no process behind.
    assert leftovers(sim.control_dir) == []
    assert not sim.tree_processes()


def test_each_site_fault_fails_its_check(
    sim: Any, ssh_password_settings: SiteSettings, tmp_path: Path
) -> None:
    """One run, several independent faults: a missing and a non-executable script, an env
    script that puts nothing on the PATH, CalibConst on an AFS without tokens, a full file
    system under the raw data, and a local clock 10 minutes ahead (the one simulated fault)."""
    (sim.inj() / "reset.sh").unlink()
    (sim.stage_dir("search_peak") / "genJob.sh").chmod(0o644)
    bare_env = sim.root / "home/bare_env"
    bare_env.write_text("export ROUND_NUMBER=18\n")
    users.chown_tree(bare_env, SIM_USER)
    settings = ssh_password_settings.model_copy(
        update={
            "env_script": str(bare_env),
            "calib_const_root": "/afs/ihep.ac.cn/bes3/offline/CalibConst/OfflineEvtFilter",
        }
    )
    with full_filesystem(sim.data("round18")):
        report = doctor(settings, clock=lambda: time.time() + 600)
    got = statuses(report)
    assert not report.usable
    assert got["hops"] == got["write"] == got["detached"] == "pass", report
    paths = report.check("paths")
    assert paths.status == "fail"
    text = "\n".join(paths.evidence)
    assert "InjSigTimeCal/reset.sh: missing" in text
    assert "search_peak/genJob.sh" in text and "lacks 'x'" in text
    assert "TOPUP_CALIB_CONST_ROOT" in paths.fix and "TOPUP_TOPUP_ROOT" in paths.fix
    tools = report.check("tools")
    assert tools.status == "fail" and "TOPUP_ENV_SCRIPT" in tools.fix
    assert "hep_sub not on the PATH after sourcing" in tools.summary
    assert "hep_q -u $USER exits" in " ".join(tools.evidence)
    afs = report.check("afs")
    assert afs.status == "fail" and "kinit" in afs.fix
    quota = report.check("quota")
    assert quota.status == "fail" and "TOPUP_DATA_ROOT" in quota.fix
    clock = report.check("clock")
    assert clock.status == "fail" and "NTP" in clock.fix
    assert -610 < float(clock.summary.split()[2]) < -590
    assert leftovers(sim.control_dir) == []


def test_tools_only_after_sourcing_warns(sim: Any, site_root: Path) -> None:
    """A login node without hadd/root on the plain PATH (the sim's missing-PATH option):
    the steps still work (they source the env script), the legacy invocation would not."""
    with SshPair(user=SIM_USER, plain_path_tools=False) as pair:
        pair.follow_faults(site_root / ".sim" / "faults.json")
        report = doctor(sim.settings(**pair.client_overrides()))
    tools = report.check("tools")
    assert tools.status == "warn" and report.usable
    assert any("hadd is not on the PATH of a plain exec" in e for e in tools.evidence)
    assert "PATH" in tools.fix


def test_read_only_control_dir_fails_write(sim: Any, ssh_password_settings: SiteSettings) -> None:
    sim.control_dir.chmod(0o555)
    try:
        report = doctor(ssh_password_settings)
    finally:
        sim.control_dir.chmod(0o755)
    got = statuses(report)
    assert got["write"] == "fail" and "TOPUP_CONTROL_DIR" in report.check("write").fix
    assert got["detached"] == "fail" and "write" in report.check("detached").summary
    assert got["paths"] == got["hops"] == "pass"
    assert not report.usable


def test_processes_killed_at_logout_fail_detached(
    sim: Any, ssh_password_settings: SiteSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A logout reaper, as logind's KillUserProcesses: when the doctor disconnects after its
    probe started, the probe's session group is killed.

    The reaper acts inside the real disconnect (``RemoteSite.close`` wrapped: the real close,
    then the kill), not from a thread watching sshd processes, which had to see the
    connection before it closed and raced on a loaded machine."""
    killed: list[int] = []
    real_close = RemoteSite.close

    def close_then_reap(site: RemoteSite) -> None:
        real_close(site)
        for pid_file in sim.control_dir.glob("doctor-*/doctor-probe/pid"):
            text = pid_file.read_text().strip()
            if text.isdigit() and int(text) not in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(text), signal.SIGKILL)
                killed.append(int(text))

    monkeypatch.setattr(RemoteSite, "close", close_then_reap)
    report = doctor(ssh_password_settings, probe_seconds=3.0, linger_seconds=1.0)
    assert killed, "the reaper never saw the disconnect"
    check = report.check("detached")
    assert check.status == "fail", check
    assert "did not survive" in check.summary and "linger" in check.fix
    assert statuses(report)["write"] == "pass"
    assert leftovers(sim.control_dir) == []


@pytest.mark.parametrize("hop", ["jump", "login"])
def test_wrong_host_key_fails_hops(
    hop: str, ssh_password_settings: SiteSettings, sim_ssh: SshPair, tmp_path: Path
) -> None:
    """known_hosts holds another key for one hop: refused, nothing else is attempted."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = other.with_suffix(".pub").read_text().split()[:2]
    lines = sim_ssh.known_hosts.read_text().splitlines()
    port = sim_ssh.port(hop)  # type: ignore[arg-type]
    lines = [
        f"[127.0.0.1]:{port} {fake[0]} {fake[1]}" if ln.startswith(f"[127.0.0.1]:{port} ") else ln
        for ln in lines
    ]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    settings = ssh_password_settings.model_copy(
        update={"known_hosts_file": known, "accept_new_host_keys": True}
    )
    report = doctor(settings)
    hops = report.check("hops")
    assert hops.status == "fail" and "does not match" in hops.summary
    assert hop in hops.summary and "TOPUP_KNOWN_HOSTS_FILE" in hops.fix
    assert "ignored" in " ".join(hops.evidence)  # accept_new_host_keys is never honoured
    assert all(c.status == "fail" for c in report.checks)
    assert known.read_text().count(fake[1]) == 1  # nothing was added


def test_wrong_password_names_the_setting(ssh_password_settings: SiteSettings) -> None:
    from pydantic import SecretStr

    assert ssh_password_settings.login.password is not None
    login = ssh_password_settings.login.model_copy(update={"password": SecretStr("wrong")})
    report = doctor(ssh_password_settings.model_copy(update={"login": login}))
    hops = report.check("hops")
    assert hops.status == "fail" and "authentication failed" in hops.summary
    assert "SSH_PASS_BESLOGIN" in hops.fix
    assert "wrong" not in report.model_dump_json()


# ------------------------------------------------------------------------- helpers
class full_filesystem:
    """A 1 MiB tmpfs mounted over ``path`` (we are root) and filled; unmounted after."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Path:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(self.path)], check=True
        )
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={self.path}/fill", "bs=64k"],
            capture_output=True,
            check=False,
        )
        return self.path

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", str(self.path)], check=True)


@pytest.fixture(autouse=True)
def _no_mount_left(sim: Any) -> Iterator[None]:
    yield
    mounts = Path("/proc/mounts").read_text()
    assert str(sim.root) not in mounts
