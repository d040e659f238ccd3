"""RemoteSite.run through both transports: results, output draining, time limits."""

from __future__ import annotations

import time

import pytest

from steps.remote.errors import RemoteTimeout
from steps.remote.site import RemoteSite
from tests.remote.conftest import remote_pids, wait_for


def test_exit_code_stdout_stderr(site: RemoteSite) -> None:
    res = site.run("echo out; echo err >&2; printf 'é\\n'; exit 7")
    assert res.exit_code == 7
    assert not res.ok
    assert res.stdout == "out\né\n"
    assert res.stderr == "err\n"
    assert res.command == "echo out; echo err >&2; printf 'é\\n'; exit 7"
    assert site.run("true").ok


def test_bash_semantics_and_env_prefix(site: RemoteSite) -> None:
    res = site.run("set -o pipefail; false | true; echo $?; [[ abc == a* ]] && echo bash")
    assert res.stdout.split() == ["1", "bash"]
    res = site.run(site.env_prefix() + 'echo "$TOPUP_TEST_ENV"')
    assert res.stdout == "from-env-script\n"


def test_stdin_is_closed(site: RemoteSite) -> None:
    """A command reading stdin sees EOF at once instead of hanging."""
    res = site.run("cat; echo done", timeout=10)
    assert res.stdout == "done\n"


def test_large_output_is_drained(site: RemoteSite) -> None:
    """5 MB on stdout and 3 MB on stderr (legacy stalled above the 2 MiB window)."""
    start = time.monotonic()
    res = site.run(
        "head -c 5000000 /dev/zero | tr '\\0' x; head -c 3000000 /dev/zero | tr '\\0' y >&2",
        timeout=30,
    )
    assert res.ok
    assert len(res.stdout) == 5_000_000 and set(res.stdout) == {"x"}
    assert len(res.stderr) == 3_000_000 and set(res.stderr) == {"y"}
    assert time.monotonic() - start < 15


def test_background_child_holding_stdout_does_not_block(site: RemoteSite) -> None:
    """Legacy: the read waited for background children to close stdout."""
    start = time.monotonic()
    res = site.run("(sleep 60; echo late) & echo early", timeout=90)
    elapsed = time.monotonic() - start
    assert res.ok and res.stdout.startswith("early")
    assert elapsed < 30, f"took {elapsed:.1f}s"  # not held for the 60 s child
    site.run("pkill -f 'slee[p] 60$' || true", timeout=10)


def test_timeout_raises_and_kills_remote_group(site: RemoteSite) -> None:
    """The command and its children are gone after RemoteTimeout, checked by a new command."""
    grace = site.transport.grace if hasattr(site.transport, "grace") else 2.0
    start = time.monotonic()
    with pytest.raises(RemoteTimeout) as info:
        site.run("sleep 41.71 & sleep 41.72; wait", timeout=1.0)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + grace + 15, f"took {elapsed:.1f}s"  # not the 41 s sleep
    assert info.value.timeout == 1.0
    wait_for(
        lambda: remote_pids(site, "slee[p] 41.7") == [],
        10,
        "the timed-out command's processes to be gone",
    )


def test_timeout_of_a_command_ignoring_term(site: RemoteSite) -> None:
    """TERM is ignored: the caller still returns by timeout + grace, KILL follows."""
    grace = site.transport.grace if hasattr(site.transport, "grace") else 2.0
    start = time.monotonic()
    with pytest.raises(RemoteTimeout):
        site.run("trap '' TERM; sleep 42.51", timeout=1.0)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + grace + 15, f"took {elapsed:.1f}s"  # not the 42 s sleep
    wait_for(lambda: remote_pids(site, "slee[p] 42.51") == [], 15, "KILL of the group")


def test_command_finishing_just_under_timeout_is_not_a_timeout(site: RemoteSite) -> None:
    res = site.run("sleep 0.2; exit 124", timeout=5)
    assert res.exit_code == 124  # the command's own status, not a time-out


def test_stats_count_commands(site: RemoteSite) -> None:
    before = site.transport.stats.commands
    site.run("true")
    site.run("false")
    assert site.transport.stats.commands == before + 2
    assert site.transport.stats.history[-1] == "false"


def test_death_by_signal_is_128_plus_n(site: RemoteSite) -> None:
    assert site.run("kill -KILL $$").exit_code == 137
    assert site.run("kill -TERM $$").exit_code == 143
