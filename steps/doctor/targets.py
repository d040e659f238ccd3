"""Every remote path the 21 steps use, and the access each step needs to it.

Derived from the same ``SitePaths`` the steps read, so a moved tree (another round, the
simulated site) is checked where the steps will look. ``need`` is a subset of ``rwx``;
``kind`` says whether a directory or a file is expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from steps.config import SitePaths, SiteSettings

Kind = Literal["dir", "file"]


@dataclass(frozen=True)
class Target:
    path: str
    kind: Kind
    need: str  # subset of "rwx"
    used_by: str  # the step(s), for the evidence
    setting: str  # the setting that moves it (for the fix)


def _d(path: str, need: str, used_by: str, setting: str = "TOPUP_TOPUP_ROOT") -> Target:
    return Target(path, "dir", need, used_by, setting)


def _f(path: str, need: str, used_by: str, setting: str = "TOPUP_TOPUP_ROOT") -> Target:
    return Target(path, "file", need, used_by, setting)


def step_targets(settings: SiteSettings, round: str) -> list[Target]:
    """Directories, scripts and programs of one round, in step order."""
    p: SitePaths = settings.paths(round)
    afs = "TOPUP_CALIB_CONST_ROOT"
    out = [
        _f(settings.env_script, "r", "1-8 (sourced before every job script)", "TOPUP_ENV_SCRIPT"),
        _d(settings.topup_root, "rx", "all", "TOPUP_TOPUP_ROOT"),
        _d(p.data, "rx", "0, 1.1, 2.1 (raw data)", "TOPUP_DATA_ROOT"),
        _d(p.inj, "rwx", "1, 7, 8.1"),
        _f(f"{p.inj}/genJob.sh", "rx", "1.1"),
        _d(p.interval_plot, "rwx", "1.3, 7"),
        _d(p.base, "rwx", "2.1"),
        _f(f"{p.base}/genJob.sh", "rx", "2.1"),
        _d(p.hist, "rwx", "2.2, 2.3, 3-6"),
        _f(f"{p.hist}/01go.sh", "rx", "2.3"),
        _d(p.search_peak, "rwx", "3"),
        _f(f"{p.search_peak}/genJob.sh", "rx", "3.1"),
        _f(f"{p.search_peak}/add.sh", "rx", "3.2"),
        _d(p.check_shield, "rwx", "4"),
        _f(f"{p.check_shield}/genJob.sh", "rx", "4.1"),
        _d(p.ets_cut, "rwx", "5"),
        _f(f"{p.ets_cut}/genJob.sh", "rx", "5.1"),
        _f(f"{p.ets_cut}/add_shield.sh", "rx", "5.2"),
        _d(p.check_ets_cut, "rwx", "6"),
        _f(f"{p.check_ets_cut}/genJob.sh", "rx", "6.1"),
        _f(f"{p.inj}/reset.sh", "rx", "7"),
    ]
    # The 11 directories reset.sh moves or copies into (step 7 refuses to run without them).
    from steps.step7_reset import archive_dirs

    out += [_d(d, "rwx", "7 (archive)") for d in archive_dirs(p)]
    out += [
        _f(f"{p.inj}/clean_interval.sh", "r", "8.1.1"),
        _d(p.gen_const, "rwx", "8.1.2-8.1.3"),
        _f(f"{p.gen_const}/genConst.cpp", "r", "8.1.2"),
        _f(f"{p.gen_const}/copy.sh", "r", "8.1.3"),
        _d(p.const_run_from_run_to, "rwx", "8.1.4"),
        _f(f"{p.const_run_from_run_to}/rootmove.sh", "rx", "8.1.4"),
        _d(p.calib_const, "rwx", "8.2.1"),
        _f(f"{p.calib_const}/rootmove.sh", "rx", "8.2.1"),
        _d(p.offline_evt, "rwx", "8.3"),
        _f(f"{p.offline_evt}/cp_3files.sh", "rx", "8.3.1"),
        _f(f"{p.offline_evt}/a.out", "rx", "8.3.4"),
        _f(f"{p.offline_evt}/rootmove.sh", "rx", "8.3.7"),
        _f(f"{p.offline_evt}/duration_caculate/a.out", "rx", "8.3.2"),
        _f(f"{p.offline_evt}/ccompare/a.out", "rx", "8.3.3"),
        _d(f"{p.offline_evt}/check", "rwx", "8.3.5"),
        _f(f"{p.offline_evt}/check/a.out", "rx", "8.3.6"),
        _d(p.inj_sig_interval_db, "rwx", "8.1.5-8.1.6", afs),
        _f(f"{p.inj_sig_interval_db}/genInsertCmd.sh", "r", "8.1.5-8.1.6", afs),
        _d(p.inj_sig_time_db, "rwx", "8.2.2-8.2.3", afs),
        _f(f"{p.inj_sig_time_db}/genInsertCmd.sh", "r", "8.2.2-8.2.3", afs),
        _d(p.offline_evt_db, "rwx", "8.3.8-8.3.9", afs),
        _f(f"{p.offline_evt_db}/genInsertCmd.sh", "r", "8.3.8-8.3.9", afs),
        _d(p.check_db_alg, "rx", "7 (reset_root.sh)", "TOPUP_CHECK_DB_ALG_DIR"),
        _f(settings.container_cmd, "rx", "1.3, 2.3, 3-6 (PDFs)", "TOPUP_CONTAINER_CMD"),
    ]
    return out


def base_paths(settings: SiteSettings, round: str) -> list[tuple[str, str]]:
    """The roots whose file system, free space and AFS status matter, with their setting."""
    p = settings.paths(round)
    return [
        (settings.topup_root, "TOPUP_TOPUP_ROOT"),
        (p.data, "TOPUP_DATA_ROOT"),
        (settings.calib_const_root, "TOPUP_CALIB_CONST_ROOT"),
        (settings.control_dir, "TOPUP_CONTROL_DIR"),
        ("~", "home directory"),
    ]
