"""What an sshd of the pair is made of: its files, host key, config and helper scripts.

Why apart from ``sim/sshd.py``: generating these texts is pure (no process is started) and
the place to read what each server allows; ``SshPair`` writes them and runs the servers.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sim.sshd_procs import HOST

Role = Literal["jump", "login"]
ROLES: tuple[Role, ...] = ("login", "jump")  # login first: the jump config names its port
SFTP_SERVER_CANDIDATES = (
    Path("/usr/lib/openssh/sftp-server"),
    Path("/usr/libexec/openssh/sftp-server"),
    Path("/usr/libexec/sftp-server"),
)
PRIVSEP_DIR = Path("/run/sshd")
LOG_LEVELS = ("QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3")


def keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


@dataclass
class ServerFiles:
    """One sshd: its files, port and listener process."""

    role: Role
    dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    # Fixed port (asked for, or kept from the first start): never re-chosen.
    port_fixed: bool = False

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"


REAL_TOPS = ("besfs5", "bes3fs", "cvmfs", "afs")
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")

# Finds the simulated tree a command works in: from $PWD up to a dir holding .sim/layout.json,
# else the tree whose faults file the pair follows. Sets __r ("" when none).
_FIND_TREE = r"""__r=$PWD
while [ "$__r" != / ] && [ ! -f "$__r/.sim/layout.json" ]; do __r=$(dirname -- "$__r"); done
if [ "$__r" = / ]; then
  __r=$(cat -- "${TOPUP_SIM_PAIR:-/nonexistent}/faults/follow" 2>/dev/null)
  __r=${__r%/.sim/faults.json}
fi
"""
DISPATCH = (
    "#!/bin/bash\n"
    "# @TOOL@ on the PATH of a plain exec (simulated site): the stand-in of the tree this\n"
    "# command works in (sim/sshd.py).\n"
    + _FIND_TREE
    + 'if [ -z "$__r" ] || [ ! -x "$__r/sim/bin/@TOOL@" ]; then\n'
    "  echo 'bash: @TOOL@: command not found' >&2; exit 127\n"
    "fi\n"
    'exec "$__r/sim/bin/@TOOL@" "$@"\n'
)
W720 = (
    "# ~/w720 of the simulated account, sourced as on IHEP (`source ~/w720`): the BOSS\n"
    "# environment script of the simulated tree this shell works in (sim/sshd.py).\n"
    + _FIND_TREE
    + 'if [ -n "$__r" ] && [ -f "$__r/home/w720" ]; then source "$__r/home/w720"\n'
    "else echo 'w720: no simulated site here' >&2; false; fi\n"
)


def sftp_wrapper_text(fault_dir: Path, cut_dir: Path, sftp_server: Path | None) -> str:
    """The login node's SFTP subsystem: the real sftp-server, failing or cut on demand."""
    flag = shlex.quote(str(fault_dir / "sftp_fail"))
    follow = shlex.quote(str(fault_dir / "follow"))
    cuts = shlex.quote(str(cut_dir))
    target = shlex.quote(str(sftp_server) if sftp_server else "/bin/false")
    return (
        "#!/bin/sh\n"
        "# SFTP subsystem of the simulated login node; fails on demand (fault injection):\n"
        "# while the flag file exists, or the followed faults.json says sftp_fail: true;\n"
        "# cut after N bytes while tokens wait in the cut dir (SshPair.cut_sftp).\n"
        "fail() { echo 'sftp-server: disabled by fault injection' >&2; exit 1; }\n"
        f"[ -e {flag} ] && fail\n"
        f"faults=$(cat {follow} 2>/dev/null)\n"
        'if [ -n "$faults" ] && [ -r "$faults" ] && '
        'grep -Eq \'"sftp_fail"[[:space:]]*:[[:space:]]*true\' "$faults"; then fail; fi\n'
        f"cuts={cuts}\n"
        "# Cut fault: claim one token (an atomic rename), serve only its byte count of\n"
        "# the SFTP stream, then kill the whole session group (the channel dies).\n"
        'for t in "$cuts"/t*; do\n'
        '  [ -e "$t" ] || break\n'
        '  if mv -- "$t" "$t.$$" 2>/dev/null; then\n'
        '    n=$(cat -- "$t.$$"); rm -f -- "$t.$$"\n'
        f'    {target} "$@" | {{ stdbuf -o0 head -c "$n"; kill -KILL 0; }}\n'
        "    exit 1\n"
        "  fi\n"
        "done\n"
        f'exec {target} "$@"\n'
    )


def config_text(
    server: ServerFiles,
    *,
    user: str,
    log_level: str,
    authorized_keys: Path,
    login_port: int,
    login_name: str | None,
    sftp: str,
    workdir: Path,
    tools_dir: Path | None,
) -> str:
    """One server's sshd_config: loopback only, the jump host forwards to the login node only,
    the login node forwards nothing and serves SFTP (``sftp``) with the pair's PATH."""
    common = [
        f"Port {server.port}",
        f"ListenAddress {HOST}",
        f"HostKey {server.host_key}",
        "PidFile none",
        f"AuthorizedKeysFile {authorized_keys}",
        # The work dir lives under /tmp, which StrictModes would reject.
        "StrictModes no",
        # No PAM: pam_loginuid and friends fail in containers; sshd checks shadow itself.
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "PermitEmptyPasswords no",
        f"AllowUsers {user}",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "PermitTunnel no",
        "GatewayPorts no",
        "PermitUserEnvironment no",
        # Tests and the benchmark open many connections at once.
        "MaxStartups 200",
        "MaxSessions 64",
        "MaxAuthTries 6",
        "LoginGraceTime 30",
        f"LogLevel {log_level}",
    ]
    if server.role == "jump":
        target = login_name or HOST
        role_lines = [
            "AllowTcpForwarding local",
            f"PermitOpen {target}:{login_port}",
        ]
    else:
        env = [f"TOPUP_SIM_PAIR={workdir}"]
        if tools_dir is not None:
            env.append(f"PATH={tools_dir}:/usr/local/bin:/usr/bin:/bin")
        role_lines = [
            "AllowTcpForwarding no",
            f"Subsystem sftp {sftp}",
            "SetEnv " + " ".join(env),
        ]
    return "\n".join(common + role_lines) + "\n"
