"""The ``paths`` and ``write`` checks: can the login user reach, run and write what the
steps need, and create the scratch directory the ``detached`` check works in."""

from __future__ import annotations

from steps.config import SiteSettings
from steps.doctor import probes
from steps.doctor.model import Check
from steps.doctor.targets import Target, step_targets
from steps.remote.site import RemoteSite


def check_paths(site: RemoteSite, settings: SiteSettings, round_: str, timeout: float) -> Check:
    """Every path of the round's steps: there, of the right kind, with the access needed."""
    targets = step_targets(settings, round_)
    res = site.run(probes.paths_script(targets), timeout=timeout)
    facts = probes.parse_paths(res.stdout, len(targets))
    bad: list[str] = []
    fixes: list[str] = []
    for i, t in enumerate(targets):
        f = facts.get(i)
        problem = _path_problem(t, f)
        if problem:
            bad.append(f"{t.path}: {problem} (step {t.used_by})")
            fixes.append(t.setting)
    summary = f"{len(targets) - len(bad)}/{len(targets)} paths of round {round_} as needed"
    if not bad:
        return Check(
            name="paths",
            status="pass",
            summary=summary,
            evidence=[f"{len(targets)} directories, scripts and programs checked"],
        )
    return Check(
        name="paths",
        status="fail",
        summary=summary,
        evidence=bad,
        fix="create the missing paths or fix their permissions on the site, or point "
        + ", ".join(sorted(set(fixes)))
        + " at the right place",
    )


def check_write(
    site: RemoteSite, settings: SiteSettings, round_: str, timeout: float
) -> tuple[Check, str | None]:
    """The ``write`` check and the scratch directory it created (None if none was made).

    The scratch directory is returned even when the check fails, so it is still removed.
    """
    ctl = settings.control_dir
    scratch: str | None = None
    res = site.run(probes.scratch_script(ctl), timeout=timeout)
    for line in res.stdout.splitlines():
        tag, _, rest = line.partition("\t")
        if tag == "SCRATCH" and probes.SCRATCH_RE.match(rest):
            scratch = rest
    if res.exit_code != 0 or scratch is None:
        return Check(
            name="write",
            status="fail",
            summary=f"cannot write in the control directory {ctl} (exit {res.exit_code})",
            evidence=[res.stderr.strip()[:300]] if res.stderr.strip() else [],
            fix=f"make {ctl} writable by the login user, or set TOPUP_CONTROL_DIR to a "
            "writable directory (not on AFS if tokens expire during a run)",
        ), scratch
    work = [t for t in step_targets(settings, round_) if "w" in t.need]
    return Check(
        name="write",
        status="pass",
        summary=f"created, wrote and read back {scratch}",
        evidence=[
            f"control dir {ctl} writable",
            f"{len(work)} working directories checked for write access under 'paths'",
        ],
    ), scratch


def _path_problem(t: Target, f: probes.PathFacts | None) -> str:
    if f is None:
        return "no answer"
    if f.kind == "missing":
        return f"missing ({t.kind} expected)"
    if f.kind != t.kind:
        return f"is a {f.kind}, a {t.kind} is expected"
    lacking = "".join(c for c in t.need if c not in f.access)
    if lacking:
        return f"{f.mode} {f.owner}: the login user lacks {lacking!r} (needs {t.need!r})"
    return ""
