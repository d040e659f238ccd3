"""Setting up an sshd pair's files: the login user and password, client and host keys,
authorized keys, the SFTP wrapper, the tool dispatchers and ~/w720, each server's config, the
hosts file of the private mount namespace and the known_hosts the client uses.

Why apart from ``sim/sshd.py``: these are written once before the servers start (a restart
keeps them); ``SshPair`` gets them from ``PairSetup`` and keeps the processes' lifecycle. The
texts themselves come from ``sim/sshd_config.py``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim import users
from sim.sshd_config import (
    DISPATCH,
    PRIVSEP_DIR,
    REAL_TOPS,
    W720,
    Role,
    ServerFiles,
    config_text,
    keygen,
    sftp_wrapper_text,
)
from sim.sshd_procs import HOST, SshdError


class PairSetup:
    """The file set-up of ``SshPair`` (a mixin: it uses the pair's settings and servers)."""

    user: str
    workdir: Path
    login_name: str | None
    real_paths: Path | None
    plain_path_tools: bool
    log_level: str
    _password_arg: str | None
    _servers: dict[Role, ServerFiles]
    _sftp_server: Path | None
    _prepared: bool

    if TYPE_CHECKING:

        def follow_faults(self, faults_json: Path | None) -> None: ...

    # ----------------------------------------------------------------- files
    @property
    def client_key(self) -> Path:
        return self.workdir / "client_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.workdir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.workdir / "known_hosts"

    @property
    def password_file(self) -> Path:
        return self.workdir / "password"

    @property
    def fault_dir(self) -> Path:
        return self.workdir / "faults"

    @property
    def sftp_cut_dir(self) -> Path:
        """Tokens of the SFTP cut fault, one per session to cut (owned by the login user)."""
        return self.fault_dir / "sftp_cut"

    @property
    def sftp_wrapper(self) -> Path:
        return self.workdir / "sftp-subsystem"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    @property
    def tools_dir(self) -> Path:
        """On the login node's PATH (``SetEnv``): the ``hadd``/``root`` dispatchers."""
        return self.workdir / "bin"

    def host_public_key(self, role: Role) -> str:
        """``ssh-ed25519 AAAA...`` of that server's host key."""
        text = self._servers[role].host_key.with_suffix(".pub").read_text().split()
        return f"{text[0]} {text[1]}"

    # --------------------------------------------------------------- prepare
    def _prepare(self) -> None:
        """Create user, keys, password, wrapper; only once (restart keeps the keys)."""
        if self._prepared:
            return
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        # sshd reads AuthorizedKeysFile and runs the SFTP wrapper as the user: the work
        # dir must be traversable by it (secrets inside stay 0600).
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        entry = users.ensure_user(self.user)
        for parent in self.workdir.parents:
            st = parent.stat()
            if not (st.st_mode & stat.S_IXOTH or st.st_uid == entry.pw_uid):
                raise SshdError(
                    f"{parent} is not traversable by {self.user}: sshd could not read "
                    "the authorized keys; put the work dir elsewhere (e.g. under /tmp)"
                )
        password = self._password_arg
        if password is None:
            password = users.machine_password(self.user)
        else:
            users.set_password(self.user, password)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        if not self.client_key.exists():
            keygen(self.client_key, "topup-sim-client")
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        os.chmod(self.authorized_keys, 0o644)
        self.fault_dir.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.fault_dir, 0o755)
        # The wrapper runs as the user and claims tokens by renaming them.
        self.sftp_cut_dir.mkdir(mode=0o755, exist_ok=True)
        os.chown(self.sftp_cut_dir, entry.pw_uid, entry.pw_gid)
        self._write_sftp_wrapper()
        self._write_dispatchers(entry)
        self._prepare_namespace()
        if self.real_paths is not None:  # ~/w720 and the dispatchers fall back to it
            self.follow_faults(self.real_paths / ".sim" / "faults.json")
        for server in self._servers.values():
            server.dir.mkdir(mode=0o755, exist_ok=True)
            if not server.host_key.exists():
                keygen(server.host_key, f"topup-sim-{server.role}")
        self._prepared = True

    def _write_sftp_wrapper(self) -> None:
        self.sftp_wrapper.write_text(
            sftp_wrapper_text(self.fault_dir, self.sftp_cut_dir, self._sftp_server)
        )
        os.chmod(self.sftp_wrapper, 0o755)

    def _write_dispatchers(self, entry: Any) -> None:
        """``hadd``/``root`` for the PATH of a plain exec, and ``~/w720`` in the account's
        home, as on IHEP. One pair serves many simulated trees, so each runs the tree the
        command works in (found from the working directory), else the tree the pair
        currently follows (``follow_faults``)."""
        self.tools_dir.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.tools_dir, 0o755)
        for tool in ("hadd", "root"):
            path = self.tools_dir / tool
            path.write_text(DISPATCH.replace("@TOOL@", tool))
            os.chmod(path, 0o755)
        home = Path(entry.pw_dir)
        w720 = home / "w720"
        tmp = home / f".w720.{os.getpid()}.tmp"
        tmp.write_text(W720)  # the same text for every pair: replacing it is harmless
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
        os.chmod(tmp, 0o644)
        os.replace(tmp, w720)

    def _config_text(self, server: ServerFiles) -> str:
        return config_text(
            server,
            user=self.user,
            log_level=self.log_level,
            authorized_keys=self.authorized_keys,
            login_port=self._servers["login"].port,
            login_name=self.login_name,
            sftp=str(self.sftp_wrapper) if self._sftp_server else "internal-sftp",
            workdir=self.workdir,
            tools_dir=self.tools_dir if self.plain_path_tools else None,
        )

    def _prepare_namespace(self) -> None:
        """The hosts file and the (empty, root-owned) mount points of the real paths."""
        if self.login_name is not None:
            base = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
            (self.workdir / "hosts").write_text(
                base.rstrip("\n") + f"\n{HOST} {self.login_name}  # topup-sim login node\n"
            )
            os.chmod(self.workdir / "hosts", 0o644)
        if self.real_paths is not None:
            for top in REAL_TOPS:
                if not (self.real_paths / top).is_dir():
                    raise SshdError(f"{self.real_paths} has no {top}/: not a simulated tree")
                Path(f"/{top}").mkdir(mode=0o755, exist_ok=True)

    def _write_known_hosts(self) -> None:
        names = {"jump": [HOST], "login": [HOST] + ([self.login_name] if self.login_name else [])}
        lines = [
            f"[{name}]:{self._servers[r].port} {self.host_public_key(r)}\n"
            for r in ("jump", "login")
            for name in names[r]
        ]
        self.known_hosts.write_text("".join(lines))
        os.chmod(self.known_hosts, 0o644)
