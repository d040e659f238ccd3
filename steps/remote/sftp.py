"""Resumable SFTP download into a partial file, one read window at a time.

Kept apart from the transport so the resume rule is in one place: a download whose channel
died is tried again (by SshTransport.get) and continues after the bytes already on disk.
The caller verifies the finished file (RemoteSite.download checks size and sha256).
"""

from __future__ import annotations

import logging
from pathlib import Path

from paramiko import SFTPClient

from steps.remote import validate
from steps.remote.errors import DownloadError
from steps.remote.ssh_link import NET_ERRORS

log = logging.getLogger("topup.remote")

# Bytes read per SFTP request while downloading (paramiko's own read size), and bytes
# requested ahead at once: a download resumes after the last complete window.
_CHUNK = 32768
_WINDOW = 1 << 20


def sftp_path(remote_path: str) -> str:
    """SFTP paths are relative to the login directory: ``~/x`` becomes ``x``."""
    remote_path = validate.path(remote_path)
    if remote_path == "~":
        return "."
    if remote_path.startswith("~/"):
        return remote_path[2:] or "."
    return remote_path


def fetch(sftp: SFTPClient, path: str, part: Path, channel_timeout: float) -> None:
    """Append the rest of ``path`` to ``part`` (resuming after the bytes it holds)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(channel_timeout)
        with sftp.open(path, "rb") as remote, open(part, "ab") as out:
            size = remote.stat().st_size or 0
            if offset > size:  # the remote file shrank: start again
                out.truncate(0)
                offset = 0
            if offset:
                log.info("SFTP download of %s resumes at byte %d of %d", path, offset, size)
            # Pipelined reads, one window at a time: what a window brought is on disk
            # before the next starts, so a dying channel costs at most one window.
            while offset < size:
                end = min(size, offset + _WINDOW)
                remote.seek(offset)
                remote.prefetch(end)
                while offset < end and (chunk := remote.read(min(_CHUNK, end - offset))):
                    out.write(chunk)
                    offset += len(chunk)
                out.flush()
                if offset < end:  # the file shrank under us: the caller's check fails
                    break
    except (FileNotFoundError, PermissionError) as exc:
        err = _failed(path, exc)
        err.permanent = True  # retrying cannot make the file appear or readable
        raise err from None
    except NET_ERRORS as exc:
        raise _failed(path, exc) from None


def _failed(path: str, exc: BaseException) -> DownloadError:
    return DownloadError(f"SFTP download of {path} failed: {type(exc).__name__}: {exc}")
