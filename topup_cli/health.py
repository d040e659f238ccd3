"""Health probes of the stack's parts that connect, instead of trusting a live pid.

Why: a stopped (SIGSTOP) or wedged process keeps its pid and its listening socket — the
kernel still completes TCP handshakes for it — yet serves nothing. Only an answer proves a
part works: an sshd must send its ``SSH-2.0-...`` identification line, and the Prefect server
and the facade must answer their health routes with 200.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Probe:
    """The outcome of one probe: ok, or why not (one line, no secret, for the operator)."""

    ok: bool
    reason: str = ""


def ssh_handshake(host: str, port: int, timeout: float = 3.0) -> Probe:
    """Connect and read the server's SSH identification line (RFC 4253 section 4.2)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\n" not in data and len(data) < 1024:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except TimeoutError:
        return Probe(False, f"no SSH banner on port {port} within {timeout:g}s")
    except OSError as exc:
        return Probe(False, f"port {port}: {exc.strerror or type(exc).__name__}")
    # Servers may send other lines before the identification line; it starts with "SSH-".
    lines = data.decode("ascii", "replace").splitlines()
    if any(line.startswith("SSH-2.0-") for line in lines):
        return Probe(True)
    if not data:
        return Probe(False, f"port {port} closed the connection without an SSH banner")
    return Probe(False, f"port {port} answered, but not with an SSH-2.0 banner")


def http_health(url: str, timeout: float = 3.0) -> Probe:
    """GET ``url``: healthy only on 200."""
    try:
        status = httpx.get(url, timeout=timeout).status_code
    except httpx.TimeoutException:
        return Probe(False, f"no answer from {url} within {timeout:g}s")
    except httpx.HTTPError as exc:
        return Probe(False, f"{url}: {type(exc).__name__}")
    if status != 200:
        return Probe(False, f"{url} answered {status}")
    return Probe(True)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """``http_health`` as a yes or no, for the waits and ``topup status`` (no reason shown)."""
    return http_health(url, timeout).ok
