"""The ``afs``, ``quota`` and ``clock`` verdicts, all read from ONE file-system probe.

Pure functions of the probe's facts (no remote access), so each verdict's thresholds can be
read and tested apart from the command that gathered them.
"""

from __future__ import annotations

from datetime import datetime

from steps.doctor import probes
from steps.doctor.model import Check
from steps.doctor.options import DoctorOptions


def afs_check(bases: list[tuple[str, str]], f: probes.FsFacts, token_warn_hours: float) -> Check:
    """Paths on AFS need tokens that outlast a run (warn below ``token_warn_hours``)."""
    on_afs = [
        f"{path} ({setting})"
        for i, (path, setting) in enumerate(bases)
        if _on_afs(path, f.fs.get(i, ("unknown", None, "")))
    ]
    tools = [t for t in ("tokens", "klist") if f.has.get(t)]
    fs_list = [f"{bases[i][0]}: {t}" for i, (t, _, _) in sorted(f.fs.items())]
    if not on_afs:
        if tools:
            return Check(
                name="afs",
                status="pass",
                summary="no configured path is on AFS",
                evidence=fs_list,
            )
        return Check(
            name="afs",
            status="warn",
            summary="no AFS here and no tokens/klist: cannot check AFS tokens",
            evidence=fs_list
            + [
                "at IHEP, home and CalibConst live on /afs: detached "
                "commands lose write access when the session's tokens go"
            ],
            fix="nothing on a site without AFS; on IHEP this check must pass",
        )
    now = datetime.fromtimestamp(f.now) if f.now else datetime.now()
    expiries = probes.afs_token_expiry(f.tokens, now) + probes.krb_ticket_expiry(f.klist)
    evidence = [f"on AFS: {', '.join(on_afs)}"] + fs_list
    evidence += [f"tokens: {ln}" for ln in f.tokens if ln.strip()][:5]
    evidence += [f"klist: {ln}" for ln in f.klist if ln.strip()][:5]
    fix = (
        "run kinit and aklog on the login node (or keep a token-renewing session, "
        "e.g. k5start/krenew) so detached commands keep AFS access for a whole run"
    )
    if not tools:
        return Check(
            name="afs",
            status="fail",
            summary="paths on AFS, but neither tokens nor klist is available",
            evidence=evidence,
            fix=fix,
        )
    if not expiries:
        return Check(
            name="afs",
            status="fail",
            summary="paths on AFS and no valid token",
            evidence=evidence,
            fix=fix,
        )
    hours = (max(expiries) - now).total_seconds() / 3600
    if hours <= 0:
        return Check(
            name="afs", status="fail", summary="AFS tokens expired", evidence=evidence, fix=fix
        )
    status = "warn" if hours < token_warn_hours else "pass"
    return Check(
        name="afs",
        status=status,
        summary=f"AFS tokens valid for {hours:.1f} h",
        evidence=evidence,
        fix=fix if status == "warn" else "",
    )


def quota_check(bases: list[tuple[str, str]], f: probes.FsFacts, o: DoctorOptions) -> Check:
    """Free space under every base path against ``warn_free_mb`` / ``min_free_mb``."""
    evidence, worst = [], "pass"
    low: list[str] = []
    for i, (path, setting) in enumerate(bases):
        fs_type, free, existing = f.fs.get(i, ("?", None, "?"))
        if free is None:
            evidence.append(f"{path}: free space unknown ({fs_type})")
            worst = "warn" if worst == "pass" else worst
            continue
        mb = free // 1024
        at = "" if existing == path else f" (at {existing})"
        evidence.append(f"{path} ({setting}): {mb} MiB free on {fs_type}{at}")
        if mb < o.min_free_mb:
            worst = "fail"
            low.append(setting)
        elif mb < o.warn_free_mb and worst == "pass":
            worst = "warn"
            low.append(setting)
    evidence += [f"quota: {ln}" for ln in f.quota if ln.strip()][:8]
    summary = {
        "pass": "enough free space",
        "warn": "free space is low",
        "fail": f"less than {o.min_free_mb} MiB free",
    }[worst]
    fix = (
        ""
        if worst == "pass"
        else (
            "free space (or ask for quota) where "
            + ", ".join(sorted(set(low or ["?"])))
            + " point; a full disk makes the batch jobs write empty outputs"
        )
    )
    return Check(name="quota", status=worst, summary=summary, evidence=evidence, fix=fix)


def clock_check(f: probes.FsFacts, t0: float, t1: float, o: DoctorOptions) -> Check:
    """Skew between the remote clock and ours, read between ``t0`` and ``t1`` (local)."""
    if f.now is None:
        return Check(
            name="clock",
            status="fail",
            summary="the remote clock was not read",
            fix="the login node must have GNU date",
        )
    skew = f.now - (t0 + t1) / 2
    err = (t1 - t0) / 2  # the remote read the clock somewhere in [t0, t1]
    evidence = [f"remote {f.now:.2f}, local {t0:.2f}..{t1:.2f}: skew {skew:+.2f} s (+-{err:.2f})"]
    size = max(abs(skew) - err, 0.0)
    if size > o.max_skew_seconds:
        status = "fail"
    elif size > o.warn_skew_seconds:
        status = "warn"
    else:
        status = "pass"
    fix = (
        ""
        if status == "pass"
        else (
            "synchronise this machine's clock (NTP); file ages and token lifetimes are "
            "compared across the two clocks"
        )
    )
    return Check(
        name="clock",
        status=status,
        summary=f"clock skew {skew:+.1f} s",
        evidence=evidence,
        fix=fix,
    )


def _on_afs(path: str, fs: tuple[str, int | None, str]) -> bool:
    """AFS by the file system's own type; a missing path under /afs counts as AFS (its
    volume may just not be visible without a token)."""
    fs_type, _, existing = fs
    return fs_type == "afs" or (path.startswith("/afs/") and existing != path)
