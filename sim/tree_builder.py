"""Building a simulated tree: the layout (``sim/layout.py``) becomes directories and files.

Why apart from ``sim/site.py``: building is done once per tree, while the ``SimSite`` handle
drives a built tree for its whole life; the builder only reads the handle's paths.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from sim.layout import DateSpec, RoundSpec
from sim.tree_files import PYTHON, STAGE_DIRS, install, template, write

if TYPE_CHECKING:
    from sim.site import SimSite

SITE_USER = "topup"


class TreeBuilder:
    """Lays out a site's tree: the tools, each round's scripts and raw data, the history."""

    def __init__(self, site: SimSite) -> None:
        self.site = site
        self.layout = site.layout
        root = str(site.root)
        self.common = {
            "PY": PYTHON,
            "SIM_ROOT": root,
            "SIM_BIN": str(site.bin_dir),
            "SIMTOOL": str(site.bin_dir / "simtool.py"),
            "CONTAINER_BIN": str(site.root / "sim/container/bin"),
            "DATA_ROOT": str(site.data_root),
            "TOPUP_ROOT": str(site.topup_root),
            "BOSS": self.layout.boss_version,
            "BOSSE": self.layout.bosse,
            "ROUND_NUMBER": str(self.layout.env_round_number),
        }

    def build(self) -> None:
        self.tools()
        for rnd in self.layout.rounds:
            self.round(rnd)
        self.afs_shared()

    # -- site-wide pieces
    def tools(self) -> None:
        s, t = self.site, self.common
        for name in ("simcommon.py", "simbatch.py", "simjobs.py", "simimg.py", "simdb.py"):
            write(s.bin_dir / name, template(f"bin/{name}"))
        write(s.bin_dir / "simtool.py", template("bin/simtool.py"), 0o755)
        install("bin/simsubmit.sh", s.bin_dir / "simsubmit.sh", t, 0o644)
        for name in ("boss.condor", "hep_sub", "hep_q", "hep_rm", "hadd", "root"):
            install(f"bin/{name}", s.bin_dir / name, t)
        install("container/convert", s.root / "sim/container/bin/convert", t)
        install("container/hep_container", s.container_cmd, t)
        install("home/w720", s.env_script, t, 0o644)
        s.control_dir.mkdir(parents=True, exist_ok=True)
        batch = s.state_dir / "batch"
        for sub in ("jobs", "queue"):
            (batch / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("procs", "once"):
            (s.state_dir / sub).mkdir(parents=True, exist_ok=True)
        for name in ("counter", "counter.lock", "submissions.log"):
            write(batch / name, "", 0o666)
        check = s.check_db_alg_dir
        install("db/reset_root.sh", check / "reset_root.sh", t)
        write(check / "checkDBAlg.txt", "checkDBAlg share area (simulated)\n")

    def afs_shared(self) -> None:
        boss = self.layout.boss_version
        tokens = dict(self.common, KIND="InjSigInterval", ROUND="-")
        dest = self.site.calib_const_root / "InjSigInterval" / boss / "genInsertCmd.sh"
        install("db/genInsertCmd.sh", dest, tokens)

    # -- one round
    def round(self, rnd: RoundSpec) -> None:
        s = self.site
        base = s.base(rnd.name)
        inj = base / "InjSigTimeCal"
        boss = self.layout.boss_version
        afs = s.calib_const_root
        t = dict(
            self.common,
            ROUND=rnd.name,
            BASE=str(base),
            AFS_INTERVAL=str(afs / "InjSigInterval" / boss),
            AFS_TIME=str(afs / "InjSigTime" / boss / rnd.name),
            AFS_OFFLINE=str(afs / "OfflineEvtFilter" / boss / rnd.name),
        )
        for spec in rnd.dates:
            self.data(rnd, spec)
        # step 1 (InjSigTimeCal)
        install("inj/genJob.sh", inj / "genJob.sh", t)
        install("inj/temp.txt", inj / "temp.txt", t, 0o644)
        install("inj/reset.sh", inj / "reset.sh", t)
        install("inj/clean_interval.sh", inj / "clean_interval.sh", t)
        for sub in ("calibConst", "Interval_plot/tmp", "InjSigIntervalCal"):
            (inj / sub).mkdir(parents=True, exist_ok=True)
        self.rootmove(
            inj / "calibConst", f"InjSigTime_00*_{self.layout.bosse}.root", t["AFS_TIME"], t
        )
        # step 2 (DataValid, hist, plot)
        install("base/genJob.sh", base / "genJob.sh", t)
        install("base/temp.txt", base / "temp.txt", t, 0o644)
        install("hist/01go.sh", base / "hist/01go.sh", t)
        install("hist/drawcheck.c", base / "hist/drawcheck.c", t, 0o644)
        (base / "hist/tmp").mkdir(parents=True, exist_ok=True)
        (base / "plot/tmp").mkdir(parents=True, exist_ok=True)
        # steps 3-6
        for name, (rel, stage) in STAGE_DIRS.items():
            d = base / rel
            install(f"stages/{name}_genJob.sh", d / "genJob.sh", t)
            install("stages/a.out", d / "a.out", dict(t, STAGE=stage))
            (d / "tmp").mkdir(parents=True, exist_ok=True)
        sp = base / STAGE_DIRS["search_peak"][0]
        install("stages/add.sh", sp / "add.sh", t)
        (sp / "raw_shield").mkdir(exist_ok=True)
        (sp / "time_final").mkdir(exist_ok=True)
        ets = base / STAGE_DIRS["ETS_cut"][0]
        install("stages/add_shield.sh", ets / "add_shield.sh", t)
        (base / "Determining_ETS_cut/ETScutCalibConst").mkdir(parents=True, exist_ok=True)
        # step 8
        self.database(rnd, base, t)
        # cumulative files, with the traces of the processed dates
        self.history(rnd, base, t)

    def data(self, rnd: RoundSpec, spec: DateSpec) -> None:
        d = self.site.data(rnd.name, spec.date)
        d.mkdir(parents=True, exist_ok=True)
        size = self.layout.raw_file_bytes
        for run in spec.runs:
            for stream in self.layout.streams:
                name = f"run_{run:07d}_{stream}_file001_SFO-1.raw"  # as BESIII names them
                head = f"BESIII raw data (simulated) run {run} stream {stream}\n".encode()
                (d / name).write_bytes((head * (size // len(head) + 1))[:size])

    def rootmove(self, where: Path, pattern: str, target: str, t: dict[str, str]) -> None:
        hook = f"{where.name}/rootmove.sh"
        install(
            "db/rootmove.sh",
            where / "rootmove.sh",
            dict(t, HOOK=hook, PATTERN=pattern, TARGET=target),
        )

    def database(self, rnd: RoundSpec, base: Path, t: dict[str, str]) -> None:
        gen = base / "sub_database/InjSigInterval/genConst"
        write(gen / "genConst.cpp", template("db/genConst.cpp"))
        install("db/copy.sh", gen / "copy.sh", t, 0o644)  # step 8.1.3 chmods it first
        self.rootmove(gen / "const_runForm_runTo", "InjSigInterval_*.root", t["AFS_INTERVAL"], t)
        off = base / "sub_database/OfflineEvtFilter"
        install("db/cp_3files.sh", off / "cp_3files.sh", t)
        self.rootmove(off, "OfflineEvtFilter_00*.root", t["AFS_OFFLINE"], t)
        for rel, tool, name in (
            ("duration_caculate/a.out", "duration", "duration_caculate/a.out"),
            ("ccompare/a.out", "ccompare", "ccompare/a.out"),
            ("a.out", "offline_const", "OfflineEvtFilter/a.out"),
            ("check/a.out", "check", "check/a.out"),
        ):
            install("db/tool.sh", off / rel, dict(t, TOOL=tool, NAME=name))
        for kind, target in (("InjSigTime", "AFS_TIME"), ("OfflineEvtFilter", "AFS_OFFLINE")):
            tokens = dict(t, KIND=kind, ROUND=rnd.name)
            install("db/genInsertCmd.sh", Path(t[target]) / "genInsertCmd.sh", tokens)

    def history(self, rnd: RoundSpec, base: Path, t: dict[str, str]) -> None:
        """Pre-existing state: what earlier (processed) dates left behind."""
        inj = base / "InjSigTimeCal"
        bosse = self.layout.bosse
        processed = [d for d in rnd.dates if d.processed]
        runs = sorted({r for d in processed for r in d.runs})
        noise = set(self.layout.noise_runs)
        write(inj / "interval.txt", "".join(f"{r} 15000000\n" for r in runs))
        window = f"{runs[0]}     0.50     4.20     21.80     22.40\n" if runs else ""
        ets = "".join(f"{r}   1200.500   1201.700\n" for r in runs[:1])
        sp = base / STAGE_DIRS["search_peak"][0]
        et = base / STAGE_DIRS["ETS_cut"][0]
        write(sp / "window.dat", window)
        write(et / "ets_cut.txt", ets)
        for spec in processed:
            day = inj / spec.date
            day.mkdir(parents=True, exist_ok=True)
            second = base / spec.date
            second.mkdir(parents=True, exist_ok=True)
            for run in spec.runs:
                write(day / f"rec{run}_1.txt", f"// first-pass job options of run {run}\n", 0o755)
                write(day / f"rec{run}_1.txt.bosslog", "ApplicationMgr Stopped successfully\n")
                write(day / f"rec{run}_1.txt.bosserr", "")
                values = "".join(
                    f"{n:>25}{15000000:>25}\n"
                    for n in (
                        "interval_before_sorting",
                        "interval_From_DB",
                        "interval_after_sorting",
                    )
                )
                write(day / f"Interval_run{run}.txt", f"{run:>25}\n{values}")
                write(inj / "calibConst" / f"InjSigTime_00{run}_{bosse}.root", f"root IST {run}\n")
                write(base / "hist/tmp" / f"hist{run:05d}.root", f"root hist {run}\n")
                (second / str(run)).mkdir(exist_ok=True)
                write(
                    second / str(run) / f"rec{run}_0", f"// second-pass job of run {run}\n", 0o755
                )
                write(sp / "raw_shield" / f"shield_run{run}.txt", f"{run}\n")
                if run in noise:
                    write(et / "tmp" / f"shield{run}.txt", f"{run}   1200.500   1201.700\n")
            write(second / "mergeHist.sh", "", 0o755)
        if processed:
            snapshot = str(int(processed[-1].date) + 1)
            write(inj / "InjSigIntervalCal" / snapshot, (inj / "interval.txt").read_text())
            write(sp / "time_final" / snapshot, window)
            write(base / "Determining_ETS_cut/ETScutCalibConst" / snapshot, ets)


def _site_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SITE_USER)
    except KeyError:
        return None


def _open_parents(root: Path) -> None:
    """Let the site user reach the tree: add o+x to parents that lack it (no read)."""
    for parent in root.parents:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return
        if not mode & stat.S_IXOTH:
            os.chmod(parent, mode | stat.S_IXOTH)


def hand_over(root: Path) -> None:
    """Make the whole tree writable by the site user (it runs every remote command)."""
    user = _site_user()
    if user is not None and os.geteuid() == 0:
        subprocess.run(
            ["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", "--", str(root)],
            check=True,
            capture_output=True,
        )
        _open_parents(root)
        return
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o777)
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chmod(path, os.stat(path).st_mode | 0o666)
