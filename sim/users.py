"""The system user of the simulated site (stdlib only).

The simulated login node needs a real Unix account: sshd authenticates it by key and by
password, and the steps' commands run as it. The password is random but kept per machine
(root-only, under ``STATE_DIR``) so that several sshd pairs alive at the same time, e.g.
the test sessions of several developers on one machine, don't invalidate each other's
password by re-setting it.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATE_DIR = Path("/var/lib/topup-sim")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def check_user_name(name: str) -> str:
    """Refuse names that useradd/chpasswd would misread (they reach argv and stdin)."""
    if not USER_RE.match(name):
        raise ValueError(f"invalid user name {name!r}")
    return name


@contextmanager
def _state_lock() -> Iterator[None]:
    """Serialise user creation and password changes between processes."""
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _lookup(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ensure_user(name: str = "topup") -> pwd.struct_passwd:
    """Create the system user with a home and bash if it is missing; return its entry."""
    check_user_name(name)
    entry = _lookup(name)
    if entry is not None:
        return entry
    with _state_lock():
        entry = _lookup(name)
        if entry is None:
            subprocess.run(
                ["useradd", "--system", "--create-home", "--shell", "/bin/bash", name],
                check=True,
                capture_output=True,
            )
            entry = pwd.getpwnam(name)
    return entry


def set_password(name: str, password: str) -> None:
    """Set the user's password with chpasswd (read from stdin, never on a command line)."""
    check_user_name(name)
    if not password or any(c in password for c in ":\n\r"):
        raise ValueError("password must be non-empty and contain no ':' or newline")
    subprocess.run(
        ["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True
    )


def machine_password(name: str = "topup") -> str:
    """The user's simulation password: generated once per machine, then reused.

    Also (re)applies it with chpasswd, so an account whose password was changed by
    something else works again.
    """
    check_user_name(name)
    ensure_user(name)
    path = STATE_DIR / f"{name}.password"
    with _state_lock():
        if path.exists():
            password = path.read_text().strip()
        else:
            password = secrets.token_urlsafe(18)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
        set_password(name, password)
    return password


def chown_tree(root: Path, name: str = "topup") -> None:
    """Give the whole tree to the user so commands run over SSH can write it."""
    entry = ensure_user(name)
    subprocess.run(
        ["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", "--", str(root)],
        check=True,
        capture_output=True,
    )
