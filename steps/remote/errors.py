"""Exceptions of the remote layer."""

from __future__ import annotations


class RemoteError(Exception):
    """Base class for failures of the remote layer.

    Two facts decide whether the SSH layer may try again (steps/remote/retry.py), set on the
    class or on the instance (they survive pickling with the instance's ``__dict__``):
    """

    # Trying again cannot help: a wrong key or password, a missing remote file.
    permanent: bool = False
    # The remote command may have started before the failure: running it again is only safe
    # when the caller declared it idempotent.
    may_have_run: bool = False


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

    permanent = True


class AuthenticationError(RemoteConnectionError):
    """A hop refused the credentials."""

    permanent = True


class DownloadError(RemoteError):
    """A download failed or its sha256 did not match the remote file."""


class DownloadMismatch(DownloadError):
    """The downloaded bytes do not match the remote file's size and sha256."""
