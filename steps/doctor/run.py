"""The doctor's checks, in order; each returns a ``Check`` and never raises.

A check that cannot run because an earlier one failed (no connection, no scratch
directory) fails with that reason, so the report always lists every check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from steps.config import SiteSettings
from steps.doctor import probes
from steps.doctor.model import Check, DoctorReport
from steps.doctor.targets import Target, base_paths, step_targets
from steps.remote.errors import HostKeyError, RemoteError
from steps.remote.site import RemoteSite

log = logging.getLogger("topup.doctor")

PROBE_KEY = "doctor-probe"
PROBE_WORD = "survived"


@dataclass
class DoctorOptions:
    """Thresholds of the verdicts (defaults suit IHEP) and the clock to compare against."""

    round: str | None = None  # default: the site's round
    warn_free_mb: int = 2048
    min_free_mb: int = 200
    warn_skew_seconds: float = 10.0
    max_skew_seconds: float = 300.0  # Kerberos refuses tickets beyond 5 minutes
    token_warn_hours: float = 12.0
    probe_seconds: float = 2.0  # how long the detached probe runs
    linger_seconds: float = 1.0  # after the disconnect, before re-attaching
    timeout: float = 60.0
    clock: Callable[[], float] = field(default=time.time)


def _timed(fn: Callable[[], Check]) -> Check:
    began = time.monotonic()
    try:
        check = fn()
    except RemoteError as exc:  # a check's own command broke: say so, keep going
        check = Check(name=getattr(fn, "__name__", "check"), status="fail", summary=str(exc))
    check.seconds = round(time.monotonic() - began, 3)
    return check


class Doctor:
    """One doctor run over ``settings`` (host keys always verified, never added)."""

    def __init__(self, settings: SiteSettings, options: DoctorOptions | None = None) -> None:
        self.options = options or DoctorOptions()
        self.accept_new_requested = settings.accept_new_host_keys
        self.settings = settings.model_copy(update={"accept_new_host_keys": False})
        self.round = self.options.round or self.settings.round
        self.site = RemoteSite(self.settings)
        self.reached = False
        self.scratch: str | None = None

    # --------------------------------------------------------------- the run
    def run(self, name: str) -> DoctorReport:
        report = DoctorReport(site=name, login=f"{self.settings.login.host}")
        try:
            for fn in (self.hops, self.paths, self.tools, self.write):
                report.checks.append(_timed(fn))
            report.checks.extend(self.afs_quota_clock())
            report.checks.append(_timed(self.detached))
        finally:
            self._cleanup()
            self.site.close()
        return report

    def _unreached(self, name: str) -> Check:
        return Check(
            name=name, status="fail", summary="not checked: the login node was not reached"
        )

    # ---------------------------------------------------------------- checks
    def hops(self) -> Check:
        s = self.settings
        evidence = []
        if self.accept_new_requested:
            evidence.append("accept_new_host_keys is set: ignored here, keys must be known")
        if s.transport == "local":
            self.reached = True
            return Check(name="hops", status="pass", summary="local transport (no SSH hops)")
        known = str(s.known_hosts_file)
        if s.jump is not None:
            jump_only = s.model_copy(update={"login": s.jump, "jump": None})
            probe = RemoteSite(jump_only)
            try:
                res = probe.run("true", timeout=self.options.timeout)
                evidence.append(
                    f"jump {s.jump.user}@{s.jump.host}:{s.jump.port}: host key verified "
                    f"against {known}; authenticated (test command exit {res.exit_code})"
                )
            except HostKeyError as exc:
                return Check(
                    name="hops",
                    status="fail",
                    summary=f"jump host: {exc}",
                    evidence=evidence,
                    fix=f"put the jump host's key in {known} (TOPUP_KNOWN_HOSTS_FILE), after "
                    "checking its fingerprint with the site admins",
                )
            except RemoteError as exc:
                return Check(
                    name="hops",
                    status="fail",
                    summary=f"jump host: {exc}",
                    evidence=evidence,
                    fix="check TOPUP_JUMP__HOST/PORT/USER and the jump password "
                    "(SSH_PASS_LXLOGIN / TOPUP_JUMP__PASSWORD) or TOPUP_JUMP__KEY_FILE",
                )
            finally:
                probe.close()
        try:
            res = self.site.run(
                'printf "%s\\n" "$(id -un)" "$(hostname)" "${SHELL:-?}" "$HOME"',
                timeout=self.options.timeout,
            )
        except HostKeyError as exc:
            return Check(
                name="hops",
                status="fail",
                summary=f"login node: {exc}",
                evidence=evidence,
                fix=f"put the login node's key in {known} (TOPUP_KNOWN_HOSTS_FILE)",
            )
        except RemoteError as exc:
            return Check(
                name="hops",
                status="fail",
                summary=f"login node: {exc}",
                evidence=evidence,
                fix="check TOPUP_LOGIN__HOST/PORT/USER and the login password "
                "(SSH_PASS_BESLOGIN / TOPUP_LOGIN__PASSWORD) or TOPUP_LOGIN__KEY_FILE; the jump "
                "host must allow forwarding to the login node",
            )
        lines = (res.stdout.splitlines() + ["?"] * 4)[:4]
        self.reached = res.exit_code == 0
        via = f" via {s.jump.host}" if s.jump is not None else ""
        evidence.append(
            f"login {s.login.user}@{s.login.host}:{s.login.port}{via}: host key verified; "
            f"user {lines[0]} on {lines[1]}, shell {lines[2]}, home {lines[3]}"
        )
        status = "pass" if self.reached else "fail"
        return Check(
            name="hops",
            status=status,
            summary="both hops reachable",
            evidence=evidence,
            fix="" if self.reached else "the login node refused a plain command",
        )

    def paths(self) -> Check:
        if not self.reached:
            return self._unreached("paths")
        targets = step_targets(self.settings, self.round)
        res = self.site.run(probes.paths_script(targets), timeout=self.options.timeout)
        facts = probes.parse_paths(res.stdout, len(targets))
        bad: list[str] = []
        fixes: list[str] = []
        for i, t in enumerate(targets):
            f = facts.get(i)
            problem = _path_problem(t, f)
            if problem:
                bad.append(f"{t.path}: {problem} (step {t.used_by})")
                fixes.append(t.setting)
        summary = f"{len(targets) - len(bad)}/{len(targets)} paths of round {self.round} as needed"
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

    def tools(self) -> Check:
        if not self.reached:
            return self._unreached("tools")
        res = self.site.run(
            probes.tools_script(self.settings.env_script), timeout=self.options.timeout + 30
        )
        f = probes.parse_tools(res.stdout)
        env = self.settings.env_script
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

    def write(self) -> Check:
        if not self.reached:
            return self._unreached("write")
        ctl = self.settings.control_dir
        res = self.site.run(probes.scratch_script(ctl), timeout=self.options.timeout)
        for line in res.stdout.splitlines():
            tag, _, rest = line.partition("\t")
            if tag == "SCRATCH" and probes.SCRATCH_RE.match(rest):
                self.scratch = rest
        if res.exit_code != 0 or self.scratch is None:
            return Check(
                name="write",
                status="fail",
                summary=f"cannot write in the control directory {ctl} (exit {res.exit_code})",
                evidence=[res.stderr.strip()[:300]] if res.stderr.strip() else [],
                fix=f"make {ctl} writable by the login user, or set TOPUP_CONTROL_DIR to a "
                "writable directory (not on AFS if tokens expire during a run)",
            )
        work = [t for t in step_targets(self.settings, self.round) if "w" in t.need]
        return Check(
            name="write",
            status="pass",
            summary=f"created, wrote and read back {self.scratch}",
            evidence=[
                f"control dir {ctl} writable",
                f"{len(work)} working directories checked for write access under 'paths'",
            ],
        )

    def afs_quota_clock(self) -> list[Check]:
        if not self.reached:
            return [self._unreached(n) for n in ("afs", "quota", "clock")]
        bases = base_paths(self.settings, self.round)
        t0 = self.options.clock()
        try:
            res = self.site.run(
                probes.fs_script([p for p, _ in bases]), timeout=self.options.timeout + 60
            )
        except RemoteError as exc:
            return [
                Check(name=n, status="fail", summary=str(exc)) for n in ("afs", "quota", "clock")
            ]
        t1 = self.options.clock()
        facts = probes.parse_fs(res.stdout)
        return [
            _timed(lambda: self._afs(bases, facts)),
            _timed(lambda: self._quota(bases, facts)),
            _timed(lambda: self._clock(facts, t0, t1)),
        ]

    def _afs(self, bases: list[tuple[str, str]], f: probes.FsFacts) -> Check:
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
        status = "warn" if hours < self.options.token_warn_hours else "pass"
        return Check(
            name="afs",
            status=status,
            summary=f"AFS tokens valid for {hours:.1f} h",
            evidence=evidence,
            fix=fix if status == "warn" else "",
        )

    def _quota(self, bases: list[tuple[str, str]], f: probes.FsFacts) -> Check:
        o = self.options
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

    def _clock(self, f: probes.FsFacts, t0: float, t1: float) -> Check:
        if f.now is None:
            return Check(
                name="clock",
                status="fail",
                summary="the remote clock was not read",
                fix="the login node must have GNU date",
            )
        skew = f.now - (t0 + t1) / 2
        err = (t1 - t0) / 2  # the remote read the clock somewhere in [t0, t1]
        evidence = [
            f"remote {f.now:.2f}, local {t0:.2f}..{t1:.2f}: skew {skew:+.2f} s (+-{err:.2f})"
        ]
        size = max(abs(skew) - err, 0.0)
        if size > self.options.max_skew_seconds:
            status = "fail"
        elif size > self.options.warn_skew_seconds:
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

    def detached(self) -> Check:
        if not self.reached:
            return self._unreached("detached")
        if self.scratch is None:
            return Check(
                name="detached",
                status="fail",
                summary="not checked: no scratch directory (see 'write')",
                fix="fix the 'write' check first",
            )
        o = self.options
        site = self._probe_site()
        evidence = []
        try:
            started = site.start_detached(
                PROBE_KEY, f"sleep {o.probe_seconds:g}; echo {PROBE_WORD}", self.scratch
            )
            evidence.append(f"started under setsid nohup (pid {started.pid}) in {self.scratch}")
        finally:
            site.close()  # the disconnect: every connection of this run is closed
        evidence.append("disconnected")
        time.sleep(o.linger_seconds)  # let a logout reaper (logind, AFS) act first
        again = site.detached(PROBE_KEY)  # opens a new connection
        evidence.append(f"new connection: probe {again.state}")
        done = site.wait_detached(PROBE_KEY, timeout=o.probe_seconds + o.timeout, poll=0.2)
        fix = (
            "processes are killed at logout: ask the site admins for lingering "
            "(loginctl enable-linger / KillUserProcesses=no), or run the flows from a "
            "persistent session; detached commands rely on it"
        )
        if again.state == "missing":
            return Check(
                name="detached",
                status="fail",
                summary="probe lost its control dir",
                evidence=evidence,
                fix=fix,
            )
        if done.exit_code != 0 or PROBE_WORD not in done.stdout:
            evidence.append(f"probe ended with exit {done.exit_code}, output {done.stdout!r:.60}")
            return Check(
                name="detached",
                status="fail",
                summary="a detached process did not survive the disconnect",
                evidence=evidence,
                fix=fix,
            )
        evidence.append(f"re-attached; probe finished with exit 0 and printed {PROBE_WORD!r}")
        return Check(
            name="detached",
            status="pass",
            summary="a detached process survives a disconnect and is re-attached",
            evidence=evidence,
        )

    def _probe_site(self) -> RemoteSite:
        """The run's connection, with the scratch directory as control directory."""
        assert self.scratch is not None
        update = {"control_dir": self.scratch}
        return RemoteSite(self.settings.model_copy(update=update), transport=self.site.transport)

    def _cleanup(self) -> None:
        """Remove the scratch directory (killing the probe if it still runs)."""
        if self.scratch is None:
            return
        try:
            probe_site = self._probe_site()
            probe_site.kill_detached(PROBE_KEY, grace=2.0)
            probe_site.run(probes.remove_scratch_script(self.scratch), timeout=60)
        except RemoteError as exc:
            log.warning("could not remove the scratch directory %s: %s", self.scratch, exc)


def _on_afs(path: str, fs: tuple[str, int | None, str]) -> bool:
    """AFS by the file system's own type; a missing path under /afs counts as AFS (its
    volume may just not be visible without a token)."""
    fs_type, _, existing = fs
    return fs_type == "afs" or (path.startswith("/afs/") and existing != path)


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


def run_doctor(
    settings: SiteSettings, name: str = "default", options: DoctorOptions | None = None
) -> DoctorReport:
    """Run every check against ``settings``; see ``steps.doctor``."""
    return Doctor(settings, options).run(name)
