"""Detached commands: start once, re-attach, status, kill the group, list, forget."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from sim import users
from sim.sshd import SshPair
from steps.remote.errors import RemoteError, RemoteTimeout
from steps.remote.local import group_alive
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue
from tests.remote.conftest import SIM_USER, remote_pids, wait_for


def _work(site: RemoteSite) -> str:
    return str(Path(site.settings.control_dir).parent / "work")


def test_runs_in_cwd_with_env_and_records_result(site: RemoteSite) -> None:
    work = _work(site)
    d = site.start_detached("t.env", 'pwd; echo "$TOPUP_TEST_ENV"; echo oops >&2; exit 5', work)
    assert d.started and d.key == "t.env" and d.state in ("running", "exited")
    done = site.wait_detached("t.env", timeout=10, poll=0.05)
    assert done.state == "exited" and done.exit_code == 5 and not done.ok
    assert done.stdout == f"{work}\nfrom-env-script\n"
    assert done.stderr == "oops\n"
    ctl = Path(site.settings.control_dir) / "t.env"
    assert (ctl / "cmd").read_text().startswith("pwd;")
    assert int((ctl / "pid").read_text()) == done.pid


def test_env_false_does_not_source(site: RemoteSite) -> None:
    site.start_detached("t.noenv", 'echo "[$TOPUP_TEST_ENV]"', _work(site), env=False)
    assert site.wait_detached("t.noenv", 10, 0.05).stdout == "[]\n"


def test_missing_key(site: RemoteSite) -> None:
    d = site.detached("never.started")
    assert d.state == "missing" and d.pid is None and d.exit_code is None
    assert site.wait_detached("never.started", 5, 0.05).state == "missing"


def test_second_start_reattaches_and_never_runs_twice(site: RemoteSite) -> None:
    work = _work(site)
    # The command runs until the test lets it end: "running" at the second start does not
    # depend on how fast a loaded machine gets there.
    cmd = "echo line >> count.txt; while [ ! -e go ]; do sleep 0.05; done"
    first = site.start_detached("t.once", cmd, work)
    second = site.start_detached("t.once", cmd, work)
    assert first.started and not second.started
    assert second.state == "running" and second.pid == first.pid
    Path(work, "go").touch()
    site.wait_detached("t.once", 30, 0.05)
    third = site.start_detached("t.once", cmd, work)
    assert not third.started and third.state == "exited" and third.exit_code == 0
    assert Path(work, "count.txt").read_text() == "line\n"


def test_exit_inside_command_and_syntax_error_still_record_rc(site: RemoteSite) -> None:
    work = _work(site)
    site.start_detached("t.exit", "echo a; exit 3; echo b", work)
    site.start_detached("t.syntax", "echo a; if then fi", work)
    a = site.wait_detached("t.exit", 10, 0.05)
    b = site.wait_detached("t.syntax", 10, 0.05)
    assert (a.exit_code, a.stdout) == (3, "a\n")
    assert b.state == "exited" and b.exit_code == 2 and "syntax error" in b.stderr


def test_wait_timeout_leaves_command_running(site: RemoteSite) -> None:
    site.start_detached("t.slow", "sleep 60", _work(site))
    start = time.monotonic()
    with pytest.raises(RemoteTimeout):
        site.wait_detached("t.slow", timeout=0.5, poll=0.1)
    assert time.monotonic() - start < 30  # returned, did not wait for the 60 s command
    assert site.detached("t.slow").state == "running"
    assert site.kill_detached("t.slow")


def test_one_command_per_poll_cycle(site: RemoteSite) -> None:
    site.start_detached("t.cycles", "sleep 2", _work(site))
    before = site.transport.stats.commands
    started = time.monotonic()
    site.wait_detached("t.cycles", timeout=30, poll=0.2)
    elapsed = time.monotonic() - started
    cycles = site.transport.stats.commands - before
    # One command per cycle and a 0.2 s pause between cycles, however slow the machine:
    # at least one "running" answer and the final one, at most one per pause.
    assert 2 <= cycles <= elapsed / 0.2 + 1, (cycles, elapsed)
    # Once finished: exactly one command returns state, exit code and output together.
    before = site.transport.stats.commands
    done = site.wait_detached("t.cycles", timeout=10, poll=0.2)
    assert site.transport.stats.commands - before == 1
    assert done.ok


def test_kill_detached_kills_whole_group(site: RemoteSite) -> None:
    work = _work(site)
    # A child in the background and a grandchild: all in the detached group.
    site.start_detached("t.kill", "(sleep 44.61 & sleep 44.62; wait) & sleep 44.63; wait", work)
    wait_for(lambda: len(remote_pids(site, "slee[p] 44.6")) == 3, 10, "3 sleeps")
    assert site.kill_detached("t.kill", grace=2)
    assert remote_pids(site, "slee[p] 44.6") == []
    d = site.detached("t.kill")
    assert d.state == "exited"
    assert d.exit_code == 143  # TERM: the wrapper recorded it
    assert not site.kill_detached("t.kill")  # nothing left to kill


def test_kill_escalates_to_sigkill(site: RemoteSite) -> None:
    site.start_detached("t.stubborn", "trap '' TERM; sleep 45.1", _work(site))
    wait_for(lambda: len(remote_pids(site, "slee[p] 45.1")) == 1, 10, "sleep")
    start = time.monotonic()
    assert site.kill_detached("t.stubborn", grace=0.5)
    assert time.monotonic() - start < 30  # not the 45 s sleep
    assert remote_pids(site, "slee[p] 45.1") == []
    assert site.detached("t.stubborn").state == "exited"


def test_vanished_process_is_lost(site: RemoteSite) -> None:
    """SIGKILL of the whole group (e.g. a node reboot): exited, exit code unknown."""
    d = site.start_detached("t.lost", "sleep 46.2", _work(site))
    assert d.pid is not None
    site.run(f"kill -KILL -- -{d.pid}")
    wait_for(lambda: site.detached("t.lost").state == "exited", 10, "state exited")
    lost = site.detached("t.lost")
    assert lost.exit_code is None and lost.lost


def test_list_and_forget(site: RemoteSite) -> None:
    work = _work(site)
    site.start_detached("run1.a", "true", work)
    site.start_detached("run1.b", "sleep 30", work)
    site.start_detached("run2.a", "true", work)
    site.wait_detached("run1.a", 10, 0.05)
    before = site.transport.stats.commands
    listed = site.list_detached("run1.")
    assert site.transport.stats.commands == before + 1
    assert [(d.key, d.state) for d in listed] == [("run1.a", "exited"), ("run1.b", "running")]
    assert {d.key for d in site.list_detached()} == {"run1.a", "run1.b", "run2.a"}
    assert site.list_detached("nothing.") == []

    with pytest.raises(RemoteError, match="still running"):
        site.forget_detached("run1.b")
    assert site.detached("run1.b").state == "running"
    site.forget_detached("run1.a")
    assert site.detached("run1.a").state == "missing"
    again = site.start_detached("run1.a", "echo rerun", work)  # deliberate rerun
    assert again.started
    assert site.wait_detached("run1.a", 10, 0.05).stdout == "rerun\n"
    site.forget_detached("never.there")  # no error


def test_output_with_binary_bytes_and_tail(site: RemoteSite) -> None:
    site.start_detached("t.bin", "printf 'a\\0b\\n'; head -c 300000 /dev/zero | tr '\\0' z", "/tmp")
    d = site.wait_detached("t.bin", 10, 0.05)
    assert d.stdout.startswith("a\0b\n") and len(d.stdout) == 4 + 300000
    short = site.detached("t.bin", tail_bytes=10)
    assert short.stdout == "z" * 10


def test_invalid_key_or_cwd_rejected_before_any_command(site: RemoteSite) -> None:
    before = site.transport.stats.commands
    for key in ("", "../x", "a/b", "k; touch x", "$(id)", ".hidden"):
        with pytest.raises(InvalidValue):
            site.start_detached(key, "true", "/tmp")
    with pytest.raises(InvalidValue):
        site.start_detached("ok", "true", "relative/dir")
    with pytest.raises(InvalidValue):
        site.start_detached("ok", "true", "/tmp/../etc")
    assert site.transport.stats.commands == before


def test_survives_dropped_session_and_reattaches(ssh_site: RemoteSite, sim_ssh: SshPair) -> None:
    """Start, drop the connection, re-attach with the same key: no second start."""
    work = Path(_work(ssh_site))
    cmd = "echo start >> lines.txt; sleep 8; echo end >> lines.txt"
    first = ssh_site.start_detached("t.drop", cmd, str(work))
    assert first.started and first.pid is not None
    sessions = ssh_site.transport.stats.sessions
    sim_ssh.kill_sessions("login")
    assert group_alive(first.pid), "the detached group must survive the dropped session"
    again = ssh_site.start_detached("t.drop", cmd, str(work))
    assert ssh_site.transport.stats.sessions == sessions + 1
    assert not again.started and again.state == "running" and again.pid == first.pid
    done = ssh_site.wait_detached("t.drop", 60, 0.1)
    assert done.exit_code == 0
    assert (work / "lines.txt").read_text() == "start\nend\n"


def test_zombie_leader_counts_as_gone(site: RemoteSite, remote_root: Path) -> None:
    """An init that reaps slowly leaves zombies: they must not look like a running command."""
    zombie = subprocess.Popen(["true"], start_new_session=True)  # never waited for: a zombie
    try:
        wait_for(lambda: _proc_state(zombie.pid) == "Z", 10, "the zombie")
        ctl = Path(site.settings.control_dir) / "t.zombie"
        ctl.mkdir(parents=True)
        (ctl / "pid").write_text(f"{zombie.pid}\n")
        users.chown_tree(remote_root, SIM_USER)
        d = site.detached("t.zombie")
        assert (d.state, d.pid, d.exit_code) == ("exited", zombie.pid, None)
        assert not group_alive(zombie.pid)
        assert not site.kill_detached("t.zombie")
    finally:
        zombie.wait()


def _proc_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()[0]
