"""The doctor's run: its checks in order; each returns a ``Check`` and never raises.

A check that cannot run because an earlier one failed (no connection, no scratch
directory) fails with that reason, so the report always lists every check. The checks
themselves live in hops.py, access.py (paths, write), tools.py, fs_checks.py (afs, quota,
clock) and detached.py; this module holds what they share: the connection, whether the
login node was reached, the scratch directory and its removal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from steps.config import SiteSettings
from steps.doctor import probes
from steps.doctor.access import check_paths, check_write
from steps.doctor.detached import PROBE_KEY, PROBE_WORD, check_detached
from steps.doctor.fs_checks import afs_check, clock_check, quota_check
from steps.doctor.hops import check_hops
from steps.doctor.model import Check, DoctorReport
from steps.doctor.options import DoctorOptions
from steps.doctor.targets import base_paths
from steps.doctor.tools import check_tools
from steps.remote.errors import RemoteError
from steps.remote.site import RemoteSite

__all__ = ["PROBE_KEY", "PROBE_WORD", "Doctor", "DoctorOptions", "run_doctor"]

log = logging.getLogger("topup.doctor")


def _timed(fn: Callable[[], Check]) -> Check:
    began = time.monotonic()
    try:
        check = fn()
    except RemoteError as exc:  # a check's own command broke: say so, keep going
        check = Check(name=getattr(fn, "__name__", "check"), status="fail", summary=str(exc))
    check.seconds = round(time.monotonic() - began, 3)
    return check


def _not_checked(name: str, why: str, fix: str = "") -> Check:
    """A check that could not run because an earlier one failed: it fails, saying why."""
    return Check(name=name, status="fail", summary=f"not checked: {why}", fix=fix)


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
        return _not_checked(name, "the login node was not reached")

    # ---------------------------------------------------------------- checks
    # Each is a method named like its check: a check whose command raised is reported
    # under the method's name (_timed).
    def hops(self) -> Check:
        check, self.reached = check_hops(
            self.settings, self.site, self.options.timeout, self.accept_new_requested
        )
        return check

    def paths(self) -> Check:
        if not self.reached:
            return self._unreached("paths")
        return check_paths(self.site, self.settings, self.round, self.options.timeout)

    def tools(self) -> Check:
        if not self.reached:
            return self._unreached("tools")
        return check_tools(self.site, self.settings.env_script, self.options.timeout + 30)

    def write(self) -> Check:
        if not self.reached:
            return self._unreached("write")
        check, self.scratch = check_write(
            self.site, self.settings, self.round, self.options.timeout
        )
        return check

    def afs_quota_clock(self) -> list[Check]:
        if not self.reached:
            return [self._unreached(n) for n in ("afs", "quota", "clock")]
        bases = base_paths(self.settings, self.round)
        o = self.options
        t0 = o.clock()
        try:
            res = self.site.run(probes.fs_script([p for p, _ in bases]), timeout=o.timeout + 60)
        except RemoteError as exc:
            return [
                Check(name=n, status="fail", summary=str(exc)) for n in ("afs", "quota", "clock")
            ]
        t1 = o.clock()
        facts = probes.parse_fs(res.stdout)
        return [
            _timed(lambda: afs_check(bases, facts, o.token_warn_hours)),
            _timed(lambda: quota_check(bases, facts, o)),
            _timed(lambda: clock_check(facts, t0, t1, o)),
        ]

    def detached(self) -> Check:
        if not self.reached:
            return self._unreached("detached")
        if self.scratch is None:
            return _not_checked(
                "detached", "no scratch directory (see 'write')", fix="fix the 'write' check first"
            )
        return check_detached(self._probe_site(), self.scratch, self.options)

    # ------------------------------------------------------ the scratch directory
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


def run_doctor(
    settings: SiteSettings, name: str = "default", options: DoctorOptions | None = None
) -> DoctorReport:
    """Run every check against ``settings``; see ``steps.doctor``."""
    return Doctor(settings, options).run(name)
