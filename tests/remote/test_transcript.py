"""The remote layer's transcript hook (no Prefect): one record per command with its answer,
secrets masked, nothing recorded without a recorder, a broken recorder harmless."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from steps.remote import transcript
from steps.remote.errors import RemoteTimeout
from steps.remote.site import RemoteSite
from steps.remote.transcript import CommandRecord, leading_cwd, mask


@pytest.fixture
def records() -> Iterator[list[CommandRecord]]:
    got: list[CommandRecord] = []
    previous = transcript.set_recorder(got.append)
    try:
        yield got
    finally:
        transcript.set_recorder(previous)


def test_commands_detached_and_polls_are_recorded(
    ssh_site_factory: Callable[..., RemoteSite], remote_root: Path, records: list[CommandRecord]
) -> None:
    site = ssh_site_factory(auth="password")
    password = site.settings.login.password
    assert password is not None
    work = remote_root / "work"
    assert site.run(f"cd {work} && echo hi > a.txt").exit_code == 0
    assert site.run("echo boom >&2; exit 4").exit_code == 4
    site.start_detached("tx-1", "echo out; exit 5", str(work))
    site.wait_detached("tx-1", timeout=30, poll=0.05)
    site.poll_files(str(work), {"1": ["a.txt", "b.txt"]})
    with pytest.raises(RemoteTimeout):
        site.run("sleep 5", timeout=0.5)
    kinds = [r.kind for r in records]
    assert kinds[:2] == ["run", "run"] and kinds[-2:] == ["poll", "run"]
    first, failed = records[0], records[1]
    assert first.cwd == str(work) and first.exit_code == 0 and first.excerpt == ""
    assert failed.exit_code == 4 and "boom" in failed.excerpt and failed.stderr_bytes == 5
    start = next(r for r in records if r.kind == "detached-start")
    assert start.cwd == str(work) and start.answer["key"] == "tx-1" and start.answer["started"]
    assert start.answer["command"] == "echo out; exit 5" and start.answer["cwd"] == str(work)
    last = [r for r in records if r.kind == "detached-status"][-1]
    assert (last.answer["state"], last.answer["exit_code"]) == ("exited", 5)
    poll = records[-2]
    assert poll.answer["found"] == ["1:a.txt"] and poll.answer["missing"] == ["1:b.txt"]
    timed_out = records[-1]
    assert timed_out.exit_code is None and timed_out.error.startswith("RemoteTimeout")
    assert all(password.get_secret_value() not in r.text + r.excerpt for r in records)


def test_no_recorder_records_nothing_and_a_broken_one_is_harmless(local_site: RemoteSite) -> None:
    # A flow run earlier in this process may have installed the store's recorder.
    previous = transcript.set_recorder(None)
    try:
        assert not transcript.active()
        with transcript.recording("run", "true", "~") as rec:
            assert rec is None  # nothing is built without a recorder
        assert local_site.run("true").exit_code == 0

        def broken(record: CommandRecord) -> None:
            raise RuntimeError("store down")

        transcript.set_recorder(broken)
        assert local_site.run("echo fine").stdout == "fine\n"
    finally:
        transcript.set_recorder(previous)


def test_mask_and_cwd() -> None:
    text = "login --password=hunter2 TOKEN: abc 'pw' secret='x y' plain"
    masked = mask(text, secrets=("pw",))
    assert "hunter2" not in masked and "abc" not in masked and "x y" not in masked
    assert "'********'" in masked and masked.endswith("plain")
    assert leading_cwd("cd '/a b/c' && ls") == "/a b/c"
    assert leading_cwd('cd "$HOME"/x && ls') == "~/x"
    assert leading_cwd("cd /x; ls") == "/x"
    assert leading_cwd("ls /x") == "~"
