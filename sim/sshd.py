"""Two real OpenSSH servers on loopback: the simulated jump host and login node.

The remote layer must be exercised against the real protocol (jump-host forwarding, host
key checks, SFTP, dropped connections), so this runs ``/usr/sbin/sshd`` twice, as root,
each with its own config, host key, port and log under one work dir. Stdlib only.

Processes of a pair are found through /proc: the listener is our child; every sshd a
connection forks keeps the server's log file open, which identifies it even after the
listener has gone (its process title no longer shows the config).

This module is the package's public entry point for the pair: ``sim/sshd_procs.py``
(process mechanics), ``sim/sshd_config.py`` (config and helper script texts),
``sim/sshd_setup.py`` (writing keys, user and files) and ``sim/sshd_faults.py`` (fault knobs)
do parts of the work; their public names used elsewhere are imported here so that
``from sim.sshd import ...`` keeps working.
"""

from __future__ import annotations

import atexit
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from sim import netfaults, users
from sim.sshd_config import (
    HOST_NAME_RE,
    LOG_LEVELS,
    PRIVSEP_DIR,
    REAL_TOPS,
    ROLES,
    SFTP_SERVER_CANDIDATES,
    Role,
    ServerFiles,
)
from sim.sshd_faults import PairFaults, held_by, held_marker
from sim.sshd_procs import (
    HOST,
    SshdError,
    alive,
    all_pids,
    exe_of,
    free_port,
    has_open,
    kill_pids,
    ppid_and_state,
    ssh_banner,
    wait_until,
)
from sim.sshd_setup import PairSetup

__all__ = [
    "HOST",
    "LOG_LEVELS",
    "PRIVSEP_DIR",
    "REAL_TOPS",
    "ROLES",
    "SFTP_SERVER_CANDIDATES",
    "Role",
    "SshPair",
    "SshdError",
    "free_port",
    "held_by",
    "held_marker",
    "ssh_banner",
]

# Strong references: a pair dropped without stop() is still stopped at exit.
_LIVE: set[SshPair] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for pair in list(_LIVE):
        pair.stop()


class SshPair(PairSetup, PairFaults):
    """A jump host and a login node (real sshd processes) reachable as ``user``.

    Key and password authentication work on both hops. The jump host forwards only to
    the login node; the login node forwards nothing and serves SFTP through a wrapper
    that fails while ``faults/sftp_fail`` exists in the work dir.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        user: str = "topup",
        password: str | None = None,
        sshd: Path = Path("/usr/sbin/sshd"),
        log_level: str = "DEBUG1",
        start_timeout: float = 15.0,
        stop_at_exit: bool = True,
        jump_port: int | None = None,
        login_port: int | None = None,
        plain_path_tools: bool = True,
        login_name: str | None = None,
        real_paths: Path | None = None,
    ) -> None:
        self.user = users.check_user_name(user)
        # As on IHEP's login node, hadd and root are on the PATH of a plain exec; False
        # reproduces a node where only the environment script puts them there.
        self.plain_path_tools = plain_path_tools
        # The login node's site name (e.g. "beslogin"): the jump host resolves it (to
        # 127.0.0.1, in its private mount namespace's /etc/hosts) and forwards by it.
        if login_name is not None and not HOST_NAME_RE.match(login_name):
            raise ValueError(f"login_name must be a plain host name, got {login_name!r}")
        self.login_name = login_name
        # A simulated tree laid at the real absolute paths (/besfs5, /bes3fs, /cvmfs, /afs)
        # inside the login node's private mount namespace: IHEP's settings work unchanged.
        self.real_paths = Path(real_paths).resolve() if real_paths is not None else None
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="topup-sshd-")).resolve()
        self.sshd = sshd
        # DEBUG1 is the lowest level at which sshd logs each direct-tcpip forwarding.
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {log_level!r}")
        self.log_level = log_level
        self.start_timeout = start_timeout
        self._password_arg = password
        self._servers: dict[Role, ServerFiles] = {
            r: ServerFiles(r, self.workdir / r) for r in ROLES
        }
        for role, fixed in (("jump", jump_port), ("login", login_port)):
            if fixed is not None:
                self._servers[role].port = fixed
                self._servers[role].port_fixed = True
        self._sftp_server = next((p for p in SFTP_SERVER_CANDIDATES if p.exists()), None)
        self._prepared = False
        self._net_faults: list[netfaults.HostFault] = []
        # False only for a long-lived demo site that another command stops later.
        self.stop_at_exit = stop_at_exit

    def port(self, role: Role) -> int:
        return self._servers[role].port

    @property
    def jump_port(self) -> int:
        return self._servers["jump"].port

    @property
    def login_port(self) -> int:
        return self._servers["login"].port

    def log_path(self, role: Role) -> Path:
        return self._servers[role].log

    def log_text(self, role: Role) -> str:
        log = self._servers[role].log
        return log.read_text(errors="replace") if log.exists() else ""

    def pid(self, role: Role) -> int | None:
        """The listener's pid while it runs."""
        proc = self._servers[role].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    # ------------------------------------------------------------- lifecycle
    def start(self) -> SshPair:
        """Start both servers and wait until each answers with an SSH banner.

        A pending outage or refusal (``outage``, ``refuse_connects``) ends here.
        """
        self._prepare()
        self._cancel_net_faults()
        if self.stop_at_exit:
            _LIVE.add(self)
        try:
            for role in ROLES:
                if self.pid(role) is None:
                    self._start_server(self._servers[role])
            self._write_known_hosts()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_server(self, server: ServerFiles) -> None:
        attempts = 1 if server.port_fixed else 5
        last_error = ""
        for _ in range(attempts):
            if not server.port_fixed:
                server.port = free_port()
            server.config.write_text(self._config_text(server))
            check = subprocess.run(
                [str(self.sshd), "-t", "-f", str(server.config)], capture_output=True, text=True
            )
            if check.returncode != 0:
                raise SshdError(f"{server.role} sshd config invalid: {check.stderr.strip()}")
            with open(server.log, "ab") as log:
                log.write(f"=== topup-sim: starting {server.role} on port {server.port}\n".encode())
                mark = log.tell()
            server.proc = subprocess.Popen(
                self._namespaced(
                    server, [str(self.sshd), "-D", "-E", str(server.log), "-f", str(server.config)]
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            proc = server.proc

            def ready(
                p: subprocess.Popen[bytes] = proc, port: int = server.port, mark: int = mark
            ) -> bool:
                # Our own listener must say it listens: a banner alone could come from
                # another process that took the port first.
                if p.poll() is not None:
                    return True
                own = f"Server listening on {HOST} port {port}." in self._log_since(server, mark)
                return own and ssh_banner(port) is not None

            try:
                wait_until(
                    ready,
                    self.start_timeout,
                    f"{server.role} sshd banner on port {server.port}",
                )
            except SshdError:
                self._stop_server(server)
                raise
            if proc.poll() is None:
                server.port_fixed = True
                return
            # Exited early: most likely the port was taken meanwhile; retry on a new one.
            last_error = self.log_text(server.role)[-2000:]
            server.proc = None
        raise SshdError(f"{server.role} sshd did not start: {last_error}")

    @staticmethod
    def _log_since(server: ServerFiles, offset: int) -> str:
        with open(server.log, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def _namespaced(self, server: ServerFiles, command: list[str]) -> list[str]:
        """``command`` as is, or under ``unshare -m`` with this server's bind mounts: the
        hosts file naming the login node (both servers), the tree at the real paths (login).
        The mounts are private to the server and its sessions; the host sees none of them."""
        mounts: list[tuple[str, str]] = []
        if self.login_name is not None:
            mounts.append((str(self.workdir / "hosts"), "/etc/hosts"))
        if self.real_paths is not None and server.role == "login":
            mounts += [(str(self.real_paths / top), f"/{top}") for top in REAL_TOPS]
        if not mounts:
            return command
        lines = ["set -e"]
        for source, target in mounts:
            lines.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
        lines.append('exec "$@"')
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", "\n".join(lines), "sshd-ns", *command,
        ]  # fmt: skip

    def stop(self, role: Role | None = None) -> None:
        """Stop one server or both, their live connections included, and reap them.

        ``start()`` brings a stopped server back on its port with its keys. A pending outage
        or refusal is cancelled first (it would start the server again).
        """
        self._cancel_net_faults()
        for r in (role,) if role else ("jump", "login"):
            self._stop_server(self._servers[r])
        if all(self.pid(r) is None for r in ROLES):
            _LIVE.discard(self)

    def _stop_server(self, server: ServerFiles) -> None:
        # Sessions first, while the listener is alive to reap them.
        self._kill_pids(self._session_pids(server))
        proc = server.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        server.proc = None
        # A connection accepted in between outlives the listener: sweep by log file.
        self._kill_pids(self._pids_of(server))

    def restart(self, role: Role) -> None:
        """Stop one server (dropping its connections) and start it on the same port and keys."""
        server = self._servers[role]
        self._stop_server(server)
        self._start_server(server)

    def close(self) -> None:
        """Stop, and remove the work dir if this pair created it."""
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SshPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SshPair(workdir={str(self.workdir)!r}, user={self.user!r}, "
            f"jump_port={self.jump_port}, login_port={self.login_port})"
        )

    # -------------------------------------------------------------- sessions
    def _pids_of(self, server: ServerFiles) -> list[int]:
        """Every live sshd process of this server: those holding its log file open."""
        log = str(server.log)
        sshd = os.path.realpath(self.sshd)
        found = []
        for pid in all_pids():
            exe = exe_of(pid)
            if exe is None or os.path.realpath(exe) != sshd:
                continue
            if alive(pid) and has_open(pid, log):
                found.append(pid)
        return found

    def _session_pids(self, server: ServerFiles) -> list[int]:
        listener = server.proc.pid if server.proc is not None else None
        return [p for p in self._pids_of(server) if p != listener]

    def processes(self) -> list[int]:
        """All live sshd processes of the pair (listeners and connections)."""
        return [pid for s in self._servers.values() for pid in self._pids_of(s)]

    def sessions(self, role: Role) -> int:
        """Live connections of that server: the listener's per-connection children."""
        listener = self.pid(role)
        if listener is None:
            return 0
        count = 0
        for pid in all_pids():
            info = ppid_and_state(pid)
            if info is not None and info[0] == listener and info[1] not in ("Z", "X"):
                count += 1
        return count

    def kill_sessions(self, role: Role) -> int:
        """Drop every live connection of that server (SIGKILL, like a lost network).

        The listener stays up. Commands the users started are left alone, as a real
        dropped connection would; only sshd processes die. Returns how many connections
        were dropped.
        """
        dropped = self.sessions(role)
        self._kill_pids(self._session_pids(self._servers[role]))
        return dropped

    _kill_pids = staticmethod(kill_pids)

    # ---------------------------------------------------------------- client
    def client_overrides(
        self, auth: Literal["key", "password", "both"] = "password"
    ) -> dict[str, Any]:
        """The SiteSettings fields that reach this pair (steps/config.py names).

        Passwords by default, as the real site's hops (keys work too)."""
        if auth not in ("key", "password", "both"):
            raise ValueError(f"auth must be key, password or both, got {auth!r}")

        def hop(role: Role) -> dict[str, Any]:
            host = self.login_name if role == "login" and self.login_name else HOST
            h: dict[str, Any] = {"host": host, "port": self.port(role), "user": self.user}
            if auth in ("key", "both"):
                h["key_file"] = self.client_key
            if auth in ("password", "both"):
                h["password"] = SecretStr(self.password)
            return h

        return {
            "transport": "ssh",
            "jump": hop("jump"),
            "login": hop("login"),
            "known_hosts_file": self.known_hosts,
        }
