"""The ``tools`` check: the env script sources silently and puts every tool the steps
invoke on the PATH of the steps' own shell (a non-login bash that sources it)."""

from __future__ import annotations

from steps.doctor import probes
from steps.doctor.model import Check
from steps.remote.site import RemoteSite


def check_tools(site: RemoteSite, env: str, timeout: float) -> Check:
    """Source ``env`` (TOPUP_ENV_SCRIPT) and look for ``probes.TOOLS`` with and without it."""
    res = site.run(probes.tools_script(env), timeout=timeout)
    f = probes.parse_tools(res.stdout)
    evidence: list[str] = []
    problems: list[str] = []
    warnings: list[str] = []
    if f.env_rc != 0:
        problems.append(f"sourcing {env} exits {f.env_rc}")
    if f.env_stdout.strip():
        problems.append(
            f"sourcing {env} prints on stdout ({f.env_stdout.strip()[:80]!r}); "
            "step 8.3.6 needs it silent"
        )
    if not f.env_round:
        warnings.append(f"{env} does not export ROUND_NUMBER (the generators read it)")
    else:
        evidence.append(f"{env} sourced: exit 0, silent, ROUND_NUMBER={f.env_round}")
    for tool in probes.TOOLS:
        with_env = (f.with_env or {}).get(tool, "")
        plain = (f.plain or {}).get(tool, "")
        if not with_env:
            problems.append(f"{tool} not on the PATH after sourcing {env}")
        else:
            evidence.append(f"{tool}: {with_env}" + ("" if plain else " (only after sourcing)"))
        if not plain and tool in ("hadd", "root"):
            warnings.append(
                f"{tool} is not on the PATH of a plain exec (the legacy "
                "mergeHist.sh/01go.sh ran without sourcing; ours source it)"
            )
    if f.hep_q_rc != 0:
        problems.append(f"hep_q -u $USER exits {f.hep_q_rc}: {f.hep_q_err[:200]}")
    else:
        evidence.append("hep_q -u $USER answers (exit 0)")
    if problems:
        return Check(
            name="tools",
            status="fail",
            summary="; ".join(problems)[:300],
            evidence=problems + warnings + evidence,
            fix=f"make TOPUP_ENV_SCRIPT ({env}) a silent script that puts the "
            "BOSS/ROOT/HTCondor commands on the PATH (the steps source it in a "
            "non-login bash before every job script)",
        )
    status = "warn" if warnings else "pass"
    return Check(
        name="tools",
        status=status,
        summary=f"{len(probes.TOOLS)} tools found as the steps invoke them",
        evidence=warnings + evidence,
        fix="put hadd/root on the login PATH (e.g. in ~/.bashrc)" if warnings else "",
    )
