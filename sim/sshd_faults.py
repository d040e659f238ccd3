"""Faults of an sshd pair: SFTP failing or cut, connections refused, a host down for a while.

Why apart from ``sim/sshd.py``: the fault knobs are their own concern (tests and ``topup-sim
faults|net`` turn them); ``SshPair`` gets them from ``PairFaults`` and keeps the lifecycle.
The timed network mechanics live in ``sim/netfaults.py``.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sim import netfaults
from sim.sshd_config import ROLES, Role, ServerFiles
from sim.sshd_procs import HOST, SshdError, alive


def held_marker(workdir: Path, role: str) -> Path:
    """The file saying that ``role`` of the pair in ``workdir`` is down on purpose (a fault)."""
    return Path(workdir) / "faults" / f"held-{role}"


def held_by(workdir: Path, role: str) -> int | None:
    """The live process holding ``role`` down with a network fault, or None."""
    try:
        pid = int(held_marker(workdir, role).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


class PairFaults:
    """The fault methods of ``SshPair`` (a mixin: it uses the pair's servers and files)."""

    user: str
    workdir: Path
    _servers: dict[Role, ServerFiles]
    _sftp_server: Path | None
    _net_faults: list[netfaults.HostFault]

    if TYPE_CHECKING:

        @property
        def fault_dir(self) -> Path: ...

        @property
        def sftp_cut_dir(self) -> Path: ...

        def _prepare(self) -> None: ...

        def _start_server(self, server: ServerFiles) -> None: ...

        def _stop_server(self, server: ServerFiles) -> None: ...

    def set_sftp_fail(self, fail: bool) -> None:
        """Make the login node's SFTP subsystem fail (True) or work (False)."""
        if self._sftp_server is None:
            raise SshdError("SFTP fault injection needs an sftp-server binary (none found)")
        flag = self.fault_dir / "sftp_fail"
        if fail:
            flag.write_text("1\n")
            os.chmod(flag, 0o644)
        else:
            flag.unlink(missing_ok=True)

    def cut_sftp(self, after_bytes: int, downloads: int = 1) -> None:
        """Kill the next ``downloads`` SFTP sessions after ``after_bytes`` bytes of their stream.

        The count is of the SFTP stream the login node sends (protocol packets included),
        so a cut past ~1 kB lands inside the file data. Replaces earlier pending cuts; 0
        downloads clears them.
        """
        if self._sftp_server is None:
            raise SshdError("SFTP fault injection needs an sftp-server binary (none found)")
        if after_bytes < 0 or downloads < 0:
            raise ValueError("after_bytes and downloads must be >= 0")
        self._prepare()
        netfaults.write_tokens(self.sftp_cut_dir, after_bytes, downloads, self.user)

    def sftp_cuts_left(self) -> int:
        """Pending SFTP cuts (tokens not claimed yet)."""
        return netfaults.tokens_left(self.sftp_cut_dir)

    def refuse_connects(self, role: Role, count: int) -> netfaults.HostFault:
        """The next ``count`` connections to ``role`` are refused, then the server is back.

        The server goes away (live connections dropped, as when a host restarts) and its port
        answers each new connection with a reset before any SSH banner; after ``count`` of
        them sshd listens again on the same port with the same keys.
        """
        server = self._servers[role]
        self._stop_server(server)
        self._hold(role)
        fault = netfaults.Refuser(HOST, server.port, count, partial(self._back, role))
        self._net_faults.append(fault)
        fault.start()
        return fault

    def outage(self, role: Role, seconds: float) -> netfaults.HostFault:
        """``role`` is down for ``seconds``: connections dropped, connects refused (nothing
        listens on the port), then sshd starts again on the same port and keys."""
        server = self._servers[role]
        self._stop_server(server)
        self._hold(role)
        fault = netfaults.Outage(seconds, partial(self._back, role))
        self._net_faults.append(fault)
        fault.start()
        return fault

    def clear_faults(self) -> None:
        """Undo every fault of the pair: SFTP works, no pending cut, no outage or refusal."""
        self._cancel_net_faults()
        if self._sftp_server is not None:
            self.set_sftp_fail(False)
        if self.sftp_cut_dir.is_dir():
            netfaults.write_tokens(self.sftp_cut_dir, 0, 0, self.user)

    def _cancel_net_faults(self) -> None:
        for fault in self._net_faults:
            fault.cancel()
        self._net_faults.clear()
        for role in ROLES:
            held_marker(self.workdir, role).unlink(missing_ok=True)

    def _hold(self, role: Role) -> None:
        """Say (to a supervisor watching the pair, e.g. ``topup up``) that ``role`` is down
        on purpose, for as long as this process lives: it must not be restarted meanwhile."""
        marker = held_marker(self.workdir, role)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{os.getpid()}\n")

    def _back(self, role: Role) -> None:
        """The fault ended by itself: the server listens again, the hold is released."""
        try:
            self._start_server(self._servers[role])
        finally:
            held_marker(self.workdir, role).unlink(missing_ok=True)

    def follow_faults(self, faults_json: Path | None) -> None:
        """Also fail SFTP while ``faults_json`` (a sim site's faults file) has sftp_fail: true.

        The pair outlives the per-test sites, so the file to follow is switched per site;
        None stops following. The file must be readable by the login user.
        """
        follow = self.fault_dir / "follow"
        if faults_json is None:
            follow.unlink(missing_ok=True)
            return
        follow.write_text(f"{Path(faults_json).resolve()}\n")
        os.chmod(follow, 0o644)
