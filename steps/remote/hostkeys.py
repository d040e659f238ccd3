"""Host-key checking for both SSH hops against one known_hosts file.

The legacy transport accepted any key (AutoAddPolicy). Here an unknown key is refused
unless the operator opted in (``accept_new_host_keys``), in which case it is stored and a
warning logged; a key that differs from the stored one is always refused.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
from pathlib import Path

from paramiko import MissingHostKeyPolicy, PKey, SSHClient
from paramiko.ssh_exception import BadHostKeyException

from steps.remote.errors import HostKeyError

log = logging.getLogger("topup.remote")

_file_lock = threading.Lock()


def fingerprint(key: PKey) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHostsPolicy(MissingHostKeyPolicy):
    """Called by paramiko only for keys that are not in known_hosts at all."""

    def __init__(self, label: str, known_hosts: Path, accept_new: bool) -> None:
        self.label = label  # "host:port", for messages
        self.known_hosts = known_hosts
        self.accept_new = accept_new

    def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
        desc = f"{key.get_name()} {fingerprint(key)}"
        if not self.accept_new:
            raise HostKeyError(
                f"host key of {self.label} ({desc}) is not in {self.known_hosts}; refusing to "
                "connect (add it to known_hosts, or set accept_new_host_keys to trust it once)"
            )
        append_known_host(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "accepted NEW host key of %s (%s) and stored it in %s",
            self.label,
            desc,
            self.known_hosts,
        )


def append_known_host(path: Path, hostname: str, key: PKey) -> None:
    """Append one ``host type base64`` line (file created 0600 if missing)."""
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    with _file_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            if fh.tell() > 0 and not _ends_with_newline(path):
                fh.write("\n")
            fh.write(line)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def configure_client(client: SSHClient, label: str, known_hosts: Path, accept_new: bool) -> None:
    """Only ``known_hosts`` is trusted (no ~/.ssh or system files), with our policy."""
    client._system_host_keys.clear()  # noqa: SLF001 - never trust keys we did not configure
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(KnownHostsPolicy(label, known_hosts, accept_new))


def mismatch_error(label: str, known_hosts: Path, exc: BadHostKeyException) -> HostKeyError:
    """A clear message for a key that differs from the stored one (possible MITM)."""
    return HostKeyError(
        f"host key of {label} does not match {known_hosts}: offered {exc.key.get_name()} "
        f"{fingerprint(exc.key)}, expected {exc.expected_key.get_name()} "
        f"{fingerprint(exc.expected_key)}; refusing to connect"
    )
