"""file_facts (many files, one command) and sha256-verified downloads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.sshd import SshPair
from steps.remote.errors import DownloadError
from steps.remote.site import RemoteSite


def _dir(site: RemoteSite) -> Path:
    d = Path(site.settings.control_dir).parent / "work" / "files"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_file_facts_many_files_in_one_command(site: RemoteSite) -> None:
    d = _dir(site)
    contents = {
        "a.txt": b"hello\n",
        "empty.root": b"",
        "big.bin": os.urandom(3 * 1024 * 1024 + 17),
        "with space 'quote' $(x).txt": b"odd name",
    }
    for name, data in contents.items():
        (d / name).write_bytes(data)
    os.symlink(d / "a.txt", d / "link.txt")
    paths = [str(d / n) for n in contents] + [str(d / "link.txt"), str(d / "nope"), str(d)]
    before = site.transport.stats.commands
    facts = site.file_facts(paths)
    assert site.transport.stats.commands - before == 1
    for name, data in contents.items():
        f = facts[str(d / name)]
        assert f is not None
        assert (f.size, f.sha256) == (len(data), _sha(data))
        assert f.path == str(d / name)
        assert f.mtime == int((d / name).stat().st_mtime)
    assert facts[str(d / "link.txt")].sha256 == _sha(b"hello\n")  # type: ignore[union-attr]
    assert facts[str(d / "nope")] is None
    assert facts[str(d)] is None  # a directory is not a file
    assert site.file_facts([]) == {}


def test_file_facts_home_relative_path(site: RemoteSite) -> None:
    res = site.run('printf abc > "$HOME/.topup-facts-test"; echo "$HOME"')
    home = res.stdout.strip()
    try:
        facts = site.file_facts(["~/.topup-facts-test"])
        assert facts["~/.topup-facts-test"].sha256 == _sha(b"abc")  # type: ignore[union-attr]
    finally:
        site.run('rm -f "$HOME/.topup-facts-test"')
    assert home.startswith("/")


def test_download_verified(site: RemoteSite, tmp_path: Path) -> None:
    d = _dir(site)
    data = os.urandom(2 * 1024 * 1024 + 5)
    (d / "merged.pdf").write_bytes(data)
    local = tmp_path / "out" / "merged_250520.pdf"
    before = site.transport.stats.downloads
    facts = site.download(str(d / "merged.pdf"), local)
    assert local.read_bytes() == data
    assert (facts.size, facts.sha256) == (len(data), _sha(data))
    assert site.transport.stats.downloads == before + 1
    assert sorted(p.name for p in local.parent.iterdir()) == ["merged_250520.pdf"]


def test_download_of_missing_file(site: RemoteSite, tmp_path: Path) -> None:
    local = tmp_path / "x.pdf"
    with pytest.raises(DownloadError, match="does not exist"):
        site.download(str(_dir(site) / "missing.pdf"), local)
    assert list(tmp_path.iterdir()) == []


def test_download_of_changing_file_is_rejected(
    site: RemoteSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that changes between the remote hash and the transfer (a growing ntuple):
    the local copy does not match and is not kept.

    The change is a real append to the real file, made at the one moment that matters (after
    the hash, before the real transfer) by wrapping the transport's ``get``. A background
    writer loop raced the download instead and, on a loaded CI machine, was sometimes not
    scheduled in between (the download then matched and the test failed)."""
    d = _dir(site)
    growing = d / "growing.root"
    growing.write_bytes(b"x" * 100_000)
    transfer = site.transport.get
    appended: list[int] = []

    def grow_then_transfer(remote_path: str, local_path: Path) -> None:
        with growing.open("ab") as f:
            f.write(b"y" * 4096)
        appended.append(growing.stat().st_size)
        transfer(remote_path, local_path)

    monkeypatch.setattr(site.transport, "get", grow_then_transfer)
    local = tmp_path / "dl" / "growing.root"
    local.parent.mkdir()
    with pytest.raises(DownloadError, match="does not match"):
        site.download(str(growing), local)
    assert appended == [104_096]  # one clean transfer, not fetched again
    assert list(local.parent.iterdir()) == []  # no partial or temp file


def test_download_keeps_previous_file_when_failing(site: RemoteSite, tmp_path: Path) -> None:
    local = tmp_path / "x.pdf"
    local.write_bytes(b"old verified copy")
    with pytest.raises(DownloadError):
        site.download(str(_dir(site) / "missing.pdf"), local)
    assert local.read_bytes() == b"old verified copy"
    assert [p.name for p in tmp_path.iterdir()] == ["x.pdf"]


def test_sftp_failure_raises_download_error(
    ssh_site_factory: Callable[..., RemoteSite], sim_ssh: SshPair, tmp_path: Path
) -> None:
    """SFTP refused on every attempt: retried within the (short) budget, then given up."""
    ssh_site = ssh_site_factory(ssh_retry_seconds=0.5)
    d = _dir(ssh_site)
    (d / "f.pdf").write_bytes(b"%PDF-1.3 data")
    sim_ssh.set_sftp_fail(True)
    try:
        with pytest.raises(DownloadError, match="SFTP.*gave up after 2 attempts"):
            ssh_site.download(str(d / "f.pdf"), tmp_path / "f.pdf")
        assert list(tmp_path.iterdir()) == []
    finally:
        sim_ssh.set_sftp_fail(False)
    # SFTP back: the same site downloads fine, on the same connection.
    ssh_site.download(str(d / "f.pdf"), tmp_path / "f.pdf")
    assert (tmp_path / "f.pdf").read_bytes() == b"%PDF-1.3 data"
    assert ssh_site.transport.stats.sessions == 1


def test_download_after_dropped_session(
    ssh_site: RemoteSite, sim_ssh: SshPair, tmp_path: Path
) -> None:
    d = _dir(ssh_site)
    (d / "g.pdf").write_bytes(b"%PDF-1.3 g")
    ssh_site.run("true")
    sim_ssh.kill_sessions("jump")
    ssh_site.download(str(d / "g.pdf"), tmp_path / "g.pdf")
    assert (tmp_path / "g.pdf").read_bytes() == b"%PDF-1.3 g"
    assert ssh_site.transport.stats.sessions == 2
