"""Exceptions of the remote layer."""

from __future__ import annotations


class RemoteError(Exception):
    """Base class for failures of the remote layer."""


class RemoteConnectionError(RemoteError):
    """The site could not be reached (after reconnect attempts)."""


class RemoteTimeout(RemoteError):
    """A command did not finish within its timeout; it was killed on the remote."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"command timed out after {timeout:.0f}s")
        self.command = command
        self.timeout = timeout


class HostKeyError(RemoteConnectionError):
    """A host key was unknown or did not match known_hosts."""


class DownloadError(RemoteError):
    """A download failed or its sha256 did not match the remote file."""
