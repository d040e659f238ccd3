"""The first check: both SSH hops reachable, host keys known, credentials accepted.

Checked hop by hop (the jump host alone first) so a failure names the hop and the settings
that would fix it; the later checks run only when the login node was reached.
"""

from __future__ import annotations

from steps.config import SiteSettings
from steps.doctor.model import Check
from steps.remote.errors import HostKeyError, RemoteError
from steps.remote.site import RemoteSite


def check_hops(
    settings: SiteSettings, site: RemoteSite, timeout: float, accept_new_requested: bool
) -> tuple[Check, bool]:
    """The ``hops`` check and whether the login node was reached."""
    s = settings
    evidence = []
    if accept_new_requested:
        evidence.append("accept_new_host_keys is set: ignored here, keys must be known")
    if s.transport == "local":
        return Check(name="hops", status="pass", summary="local transport (no SSH hops)"), True
    known = str(s.known_hosts_file)
    if s.jump is not None:
        jump_only = s.model_copy(update={"login": s.jump, "jump": None})
        probe = RemoteSite(jump_only)
        try:
            res = probe.run("true", timeout=timeout)
            evidence.append(
                f"jump {s.jump.user}@{s.jump.host}:{s.jump.port}: host key verified "
                f"against {known}; authenticated (test command exit {res.exit_code})"
            )
        except HostKeyError as exc:
            return _failed(
                f"jump host: {exc}",
                evidence,
                f"put the jump host's key in {known} (TOPUP_KNOWN_HOSTS_FILE), after "
                "checking its fingerprint with the site admins",
            ), False
        except RemoteError as exc:
            return _failed(
                f"jump host: {exc}",
                evidence,
                "check TOPUP_JUMP__HOST/PORT/USER and the jump password "
                "(SSH_PASS_LXLOGIN / TOPUP_JUMP__PASSWORD) or TOPUP_JUMP__KEY_FILE",
            ), False
        finally:
            probe.close()
    try:
        res = site.run(
            'printf "%s\\n" "$(id -un)" "$(hostname)" "${SHELL:-?}" "$HOME"',
            timeout=timeout,
        )
    except HostKeyError as exc:
        return _failed(
            f"login node: {exc}",
            evidence,
            f"put the login node's key in {known} (TOPUP_KNOWN_HOSTS_FILE)",
        ), False
    except RemoteError as exc:
        return _failed(
            f"login node: {exc}",
            evidence,
            "check TOPUP_LOGIN__HOST/PORT/USER and the login password "
            "(SSH_PASS_BESLOGIN / TOPUP_LOGIN__PASSWORD) or TOPUP_LOGIN__KEY_FILE; the jump "
            "host must allow forwarding to the login node",
        ), False
    lines = (res.stdout.splitlines() + ["?"] * 4)[:4]
    reached = res.exit_code == 0
    via = f" via {s.jump.host}" if s.jump is not None else ""
    evidence.append(
        f"login {s.login.user}@{s.login.host}:{s.login.port}{via}: host key verified; "
        f"user {lines[0]} on {lines[1]}, shell {lines[2]}, home {lines[3]}"
    )
    status = "pass" if reached else "fail"
    check = Check(
        name="hops",
        status=status,
        summary="both hops reachable",
        evidence=evidence,
        fix="" if reached else "the login node refused a plain command",
    )
    return check, reached


def _failed(summary: str, evidence: list[str], fix: str) -> Check:
    return Check(name="hops", status="fail", summary=summary, evidence=evidence, fix=fix)
