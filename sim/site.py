"""The simulated BESIII site: builds the file tree and drives it from Python.

`build_site(root)` lays out, under ``root``, the real absolute paths of the site
(``root/besfs5/...``, ``root/bes3fs/...``, ``root/afs/...``, ``root/cvmfs/...``) with the raw
data, the legacy scripts of every stage (templates in ``sim/scripts``), the batch system and
the ROOT / ImageMagick stand-ins in ``root/sim/bin``, and the simulator's own state in
``root/.sim`` (faults, submissions, job states, DB ledger). Everything in the tree is bash,
GNU tools and ``/usr/bin/python3`` with the standard library, so it runs as the SSH user.

`SimSite` is the handle tests and the CLI use: settings pointing into the tree, faults,
the submission log, active jobs, and `stop_jobs()` which leaves no process behind.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sim.faults import Faults, read_faults, update_faults, write_faults
from sim.layout import DateSpec, RoundSpec, SiteLayout, default_layout
from steps.config import SiteSettings

SCRIPTS = Path(__file__).resolve().parent / "scripts"
PYTHON = "/usr/bin/python3"
SITE_USER = "topup"
# The tree's path lands unquoted in the legacy scripts and in sed expressions, and must
# not contain the placeholders the generators replace.
SAFE_ROOT_RE = re.compile(r"^/[A-Za-z0-9_./-]+$")
PLACEHOLDERS = ("RUNNO", "INTERVAL", "INPUTFILE", "_ID")
TOKEN_RE = re.compile(r"@[A-Z_]+@")

STAGE_DIRS = {
    "search_peak": ("Determining_50Hz_cut/search_peak", "3"),
    "checkShieldCalib": ("Determining_50Hz_cut/checkShieldCalib", "4"),
    "ETS_cut": ("Determining_ETS_cut/ETS_cut", "5"),
    "check_ETScut_CalibConst": ("Determining_ETS_cut/check_ETScut_CalibConst", "6"),
}
CHECK_DB_ALG_REL = (
    "besfs5/users/topup/boss720/workarea/workarea-7.2.0/Analysis/checkDBAlg/"
    "checkDBAlg-00-00-00/share"
)


class SiteBuildError(RuntimeError):
    pass


@cache
def _template(name: str) -> str:
    return (SCRIPTS / name).read_text()


def _render(name: str, tokens: dict[str, str]) -> str:
    text = _template(name)
    for key, value in tokens.items():
        text = text.replace(f"@{key}@", value)
    left = TOKEN_RE.findall(text)
    if left:
        raise SiteBuildError(f"template {name}: unresolved {sorted(set(left))}")
    return text


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    os.chmod(path, mode)


def _install(template: str, dest: Path, tokens: dict[str, str], mode: int = 0o755) -> None:
    _write(dest, _render(template, tokens), mode)


def _pid_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _pid_cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _pid_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _ancestors() -> set[int]:
    """This process and its parents: never killed by the sweep."""
    out = {0, 1}
    pid = os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return out


@dataclass
class SimSite:
    """Handle on a built tree (see the module docstring)."""

    root: Path
    layout: SiteLayout = field(default_factory=default_layout)

    # ------------------------------------------------------------------ paths
    @property
    def topup_root(self) -> Path:
        return self.root / "besfs5/groups/cal/topup"

    @property
    def data_root(self) -> Path:
        return self.root / "bes3fs/offline/data/cal"

    @property
    def calib_const_root(self) -> Path:
        return self.root / "afs/ihep.ac.cn/bes3/offline/CalibConst/OfflineEvtFilter"

    @property
    def check_db_alg_dir(self) -> Path:
        return self.root / CHECK_DB_ALG_REL

    @property
    def env_script(self) -> Path:
        return self.root / "home/w720"

    @property
    def container_cmd(self) -> Path:
        return self.root / "cvmfs/container.ihep.ac.cn/bin/hep_container"

    @property
    def control_dir(self) -> Path:
        return self.root / "home/.topup/ctl"

    @property
    def bin_dir(self) -> Path:
        return self.root / "sim/bin"

    @property
    def state_dir(self) -> Path:
        return self.root / ".sim"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "db_ledger.log"

    def base(self, round: str = "round18") -> Path:
        return self.topup_root / round / "DataValid"

    def inj(self, round: str = "round18") -> Path:
        return self.base(round) / "InjSigTimeCal"

    def hist(self, round: str = "round18") -> Path:
        return self.base(round) / "hist"

    def stage_dir(self, name: str, round: str = "round18") -> Path:
        """``search_peak``, ``checkShieldCalib``, ``ETS_cut`` or ``check_ETScut_CalibConst``."""
        return self.base(round) / STAGE_DIRS[name][0]

    def data(self, round: str = "round18", date: str | None = None) -> Path:
        path = self.data_root / round
        return path / date if date else path

    def runs(self, round: str, date: str) -> list[int]:
        return self.layout.round(round).date(date).runs

    # --------------------------------------------------------------- settings
    def settings(
        self, transport: Literal["local", "ssh"] = "local", **overrides: Any
    ) -> SiteSettings:
        """SiteSettings whose remote paths all point into this tree."""
        values: dict[str, Any] = {
            "transport": transport,
            "topup_root": str(self.topup_root),
            "data_root": str(self.data_root),
            "env_script": str(self.env_script),
            "container_cmd": str(self.container_cmd),
            "calib_const_root": str(self.calib_const_root),
            "check_db_alg_dir": str(self.check_db_alg_dir),
            "control_dir": str(self.control_dir),
            "batch_query_cmd": str(self.bin_dir / "hep_q"),
            "boss_version": self.layout.boss_version,
        }
        if transport == "local":
            values["jump"] = None
        values.update(overrides)
        return SiteSettings(**values)

    # ----------------------------------------------------------------- faults
    def faults(self) -> Faults:
        return read_faults(self.root)

    def set_faults(self, **changes: Any) -> Faults:
        """Merge ``changes`` into faults.json (e.g. ``set_faults(fail={"1": [85383]})``)."""
        return update_faults(self.root, **changes)

    def reset_faults(self) -> Faults:
        faults = Faults(noise_runs=self.layout.noise_runs)
        write_faults(self.root, faults)
        return faults

    # ------------------------------------------------------------ batch state
    def submissions(self) -> list[dict[str, Any]]:
        """Every batch submission so far, one dict per job, in submission order."""
        path = self.state_dir / "batch/submissions.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def db_ledger(self) -> list[dict[str, Any]]:
        """Every simulated DB insert (genInsertCmd.sh -sub_switch 1)."""
        if not self.ledger_path.exists():
            return []
        return [
            json.loads(line) for line in self.ledger_path.read_text().splitlines() if line.strip()
        ]

    def _job_dirs(self) -> list[Path]:
        jobs = self.state_dir / "batch/jobs"
        return sorted(jobs.iterdir()) if jobs.is_dir() else []

    def _owns(self, pid: int) -> bool:
        """The pid still belongs to this tree (guards against pid reuse)."""
        prefix = str(self.root) + "/"
        return any(a.startswith(prefix) for a in _pid_cmdline(pid))

    def _read_int(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def active_jobs(self) -> list[dict[str, Any]]:
        """Jobs idle, held or running (what ``hep_q`` lists), oldest first.

        Idle: submitted, not yet claimed by the scheduler. Held: the ``held`` fault. Running:
        claimed by a scheduler process that is still alive.
        """
        out = []
        for job_dir in self._job_dirs():
            try:
                state = (job_dir / "state").read_text().strip()
                spec = json.loads((job_dir / "spec.json").read_text())
            except (OSError, ValueError):
                continue
            if state == "R":
                pid = self._read_int(job_dir / "pid")
                if pid is None or _pid_state(pid) in ("", "Z") or not self._owns(pid):
                    continue
            elif state not in ("I", "H"):
                continue
            spec.update(state=state, id=job_dir.name)
            out.append(spec)
        return out

    def wait_jobs(self, timeout: float = 30.0, poll: float = 0.05) -> bool:
        """Wait until no job is idle or running; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.active_jobs():
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True

    def tree_processes(self) -> list[int]:
        """Processes working in this tree (cwd or an argument inside it)."""
        prefix = str(self.root) + "/"
        skip = _ancestors()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in skip or _pid_state(pid) in ("", "Z"):
                continue
            cwd = _pid_cwd(pid) + "/"
            if cwd.startswith(prefix) or any(a.startswith(prefix) for a in _pid_cmdline(pid)):
                found.append(pid)
        return found

    def stop_jobs(self, timeout: float = 5.0) -> int:
        """Remove every job and kill every process of the tree; returns how many were hit.

        Jobs are marked removed (so nothing writes outputs afterwards), the process groups
        of running step 3-6 jobs and the schedulers are killed, then every remaining process
        working in the tree (detached scripts, drawings, sleeps) until none is left.
        """
        killed: set[int] = set()
        for job_dir in self._job_dirs():
            try:
                state = (job_dir / "state").read_text().strip()
            except OSError:
                continue
            if state not in ("I", "R", "H"):
                continue
            (job_dir / "state").write_text("X\n")
            pgid = self._read_int(job_dir / "proc")
            if pgid is not None and _pid_state(pgid) not in ("", "Z") and self._owns(pgid):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                    killed.add(pgid)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + timeout
        while True:
            pids = self.tree_processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        queue = self.state_dir / "batch/queue"
        if queue.is_dir():
            for entry in queue.glob("*/*"):
                entry.unlink(missing_ok=True)
        procs = self.state_dir / "procs"
        if procs.is_dir():
            for marker in procs.iterdir():
                marker.unlink(missing_ok=True)
        return len(killed)

    # ------------------------------------------------------------------- misc
    def bash(
        self,
        command: str,
        cwd: Path | str | None = None,
        env_script: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in a non-interactive bash in the tree (local), env sourced first."""
        script = f"source {self.env_script} && {command}" if env_script else command
        return subprocess.run(
            ["/bin/bash", "-c", script],
            cwd=str(cwd) if cwd else str(self.root),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def prepare(self, date: str, round: str = "round18", through: Literal["1", "2"] = "2") -> None:
        """Fabricate, without running jobs, the state a date has after steps 1.1-1.3
        (``through="1"``: ``INJ/{date}`` with job files, logs and Interval files, the IST
        files in calibConst, the interval plots in Interval_plot, the ``{run} 15000000``
        lines in interval.txt) or after steps 1-2.4 (``"2"``: also ``BASE/{date}`` with its
        job files, ``HIST/hist{run}.root`` and ``HIST/check{run}.png``).

        For tests of later steps; earlier steps are covered by running the real scripts.
        Files get the tree owner's uid, like files written over SSH.
        """
        img = _simimg()
        runs = self.runs(round, date)
        if not runs:
            raise ValueError(f"{round}/{date} has no runs")
        bosse = self.layout.bosse
        inj = self.inj(round)
        day = inj / date
        day.mkdir(exist_ok=True)
        made: list[Path] = [day]
        for run in runs:
            made += [
                _put(day / f"rec{run}_1.txt", f"// first-pass job options of run {run}\n", 0o755),
                _put(day / f"rec{run}_1.txt.bosslog", "ApplicationMgr Stopped successfully\n"),
                _put(
                    day / f"rec{run}_1.txt.bosserr",
                    "Error in <TGraphPainter::PaintGraph>: illegal number of points (0)\n"
                    f"Info in <TCanvas::Print>: png file Interval_run{run}.png has been created\n",
                ),
                _put(day / f"Interval_run{run}.txt", _interval_text(run)),
                _put(inj / "calibConst" / f"InjSigTime_00{run}_{bosse}.root", f"root IST {run}\n"),
                _put(
                    inj / "Interval_plot" / f"Interval_run{run}.png",
                    img.plot_png(996, 772, run, f"Interval run{run}", salt=1),
                ),
            ]
        with open(inj / "interval.txt", "a") as fh:
            fh.write("".join(f"{run} 15000000\n" for run in runs))
        if through == "2":
            second = self.base(round) / date
            second.mkdir(exist_ok=True)
            made.append(second)
            hist = self.hist(round)
            for run in runs:
                run_dir = second / str(run)
                run_dir.mkdir(exist_ok=True)
                made.append(run_dir)
                for i in range(len(self.layout.streams)):
                    made.append(_put(run_dir / f"rec{run}_{i}", f"// job {run} {i}\n", 0o755))
                    made.append(
                        _put(
                            run_dir / f"rec{run}_{i}.bosslog",
                            "Application Manager Terminated successfully\n",
                        )
                    )
                    made.append(_put(run_dir / f"rec{run}_{i}.bosserr", ""))
                made.append(_put(hist / f"hist{run:05d}.root", f"root merged ntuple {run}\n" * 64))
                made.append(
                    _put(
                        hist / f"check{run}.png",
                        img.plot_png(1796, 772, run, f"run{run}", panels=3),
                    )
                )
            made.append(_put(second / "mergeHist.sh", "", 0o755))
        owner = self.root.stat()
        for path in made:
            os.chown(path, owner.st_uid, owner.st_gid)

    @classmethod
    def open(cls, root: Path) -> SimSite:
        """The handle of an existing tree (layout read from ``.sim/layout.json``)."""
        root = Path(root).resolve()
        layout_file = root / ".sim" / "layout.json"
        if not layout_file.is_file():
            raise FileNotFoundError(f"{root} holds no simulated site (no .sim/layout.json)")
        return cls(root, SiteLayout.model_validate_json(layout_file.read_text()))


@cache
def _simimg() -> Any:
    """The tree's stdlib image module, loaded from the templates (it has no tree paths)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sim_simimg", SCRIPTS / "bin" / "simimg.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _put(path: Path, data: str | bytes, mode: int = 0o644) -> Path:
    _write(path, data, mode)
    return path


def _interval_text(run: int, value: int = 15000000) -> str:
    names = ("interval_before_sorting", "interval_From_DB", "interval_after_sorting")
    return f"{run:>25}\n" + "".join(f"{n:>25}{value:>25}\n" for n in names)


# ------------------------------------------------------------------------ the builder


class _Builder:
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
            _write(s.bin_dir / name, _template(f"bin/{name}"))
        _write(s.bin_dir / "simtool.py", _template("bin/simtool.py"), 0o755)
        _install("bin/simsubmit.sh", s.bin_dir / "simsubmit.sh", t, 0o644)
        for name in ("boss.condor", "hep_sub", "hep_q", "hep_rm", "hadd", "root"):
            _install(f"bin/{name}", s.bin_dir / name, t)
        _install("container/convert", s.root / "sim/container/bin/convert", t)
        _install("container/hep_container", s.container_cmd, t)
        _install("home/w720", s.env_script, t, 0o644)
        s.control_dir.mkdir(parents=True, exist_ok=True)
        batch = s.state_dir / "batch"
        for sub in ("jobs", "queue"):
            (batch / sub).mkdir(parents=True, exist_ok=True)
        for sub in ("procs", "once"):
            (s.state_dir / sub).mkdir(parents=True, exist_ok=True)
        for name in ("counter", "counter.lock", "submissions.log"):
            _write(batch / name, "", 0o666)
        check = s.check_db_alg_dir
        _install("db/reset_root.sh", check / "reset_root.sh", t)
        _write(check / "checkDBAlg.txt", "checkDBAlg share area (simulated)\n")

    def afs_shared(self) -> None:
        boss = self.layout.boss_version
        tokens = dict(self.common, KIND="InjSigInterval", ROUND="-")
        dest = self.site.calib_const_root / "InjSigInterval" / boss / "genInsertCmd.sh"
        _install("db/genInsertCmd.sh", dest, tokens)

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
        _install("inj/genJob.sh", inj / "genJob.sh", t)
        _install("inj/temp.txt", inj / "temp.txt", t, 0o644)
        _install("inj/reset.sh", inj / "reset.sh", t)
        _install("inj/clean_interval.sh", inj / "clean_interval.sh", t)
        for sub in ("calibConst", "Interval_plot/tmp", "InjSigIntervalCal"):
            (inj / sub).mkdir(parents=True, exist_ok=True)
        self.rootmove(
            inj / "calibConst", f"InjSigTime_00*_{self.layout.bosse}.root", t["AFS_TIME"], t
        )
        # step 2 (DataValid, hist, plot)
        _install("base/genJob.sh", base / "genJob.sh", t)
        _install("base/temp.txt", base / "temp.txt", t, 0o644)
        _install("hist/01go.sh", base / "hist/01go.sh", t)
        _install("hist/drawcheck.c", base / "hist/drawcheck.c", t, 0o644)
        (base / "hist/tmp").mkdir(parents=True, exist_ok=True)
        (base / "plot/tmp").mkdir(parents=True, exist_ok=True)
        # steps 3-6
        for name, (rel, stage) in STAGE_DIRS.items():
            d = base / rel
            _install(f"stages/{name}_genJob.sh", d / "genJob.sh", t)
            _install("stages/a.out", d / "a.out", dict(t, STAGE=stage))
            (d / "tmp").mkdir(parents=True, exist_ok=True)
        sp = base / STAGE_DIRS["search_peak"][0]
        _install("stages/add.sh", sp / "add.sh", t)
        (sp / "raw_shield").mkdir(exist_ok=True)
        (sp / "time_final").mkdir(exist_ok=True)
        ets = base / STAGE_DIRS["ETS_cut"][0]
        _install("stages/add_shield.sh", ets / "add_shield.sh", t)
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
        _install(
            "db/rootmove.sh",
            where / "rootmove.sh",
            dict(t, HOOK=hook, PATTERN=pattern, TARGET=target),
        )

    def database(self, rnd: RoundSpec, base: Path, t: dict[str, str]) -> None:
        gen = base / "sub_database/InjSigInterval/genConst"
        _write(gen / "genConst.cpp", _template("db/genConst.cpp"))
        _install("db/copy.sh", gen / "copy.sh", t, 0o644)  # step 8.1.3 chmods it first
        self.rootmove(gen / "const_runForm_runTo", "InjSigInterval_*.root", t["AFS_INTERVAL"], t)
        off = base / "sub_database/OfflineEvtFilter"
        _install("db/cp_3files.sh", off / "cp_3files.sh", t)
        self.rootmove(off, "OfflineEvtFilter_00*.root", t["AFS_OFFLINE"], t)
        for rel, tool, name in (
            ("duration_caculate/a.out", "duration", "duration_caculate/a.out"),
            ("ccompare/a.out", "ccompare", "ccompare/a.out"),
            ("a.out", "offline_const", "OfflineEvtFilter/a.out"),
            ("check/a.out", "check", "check/a.out"),
        ):
            _install("db/tool.sh", off / rel, dict(t, TOOL=tool, NAME=name))
        for kind, target in (("InjSigTime", "AFS_TIME"), ("OfflineEvtFilter", "AFS_OFFLINE")):
            tokens = dict(t, KIND=kind, ROUND=rnd.name)
            _install("db/genInsertCmd.sh", Path(t[target]) / "genInsertCmd.sh", tokens)

    def history(self, rnd: RoundSpec, base: Path, t: dict[str, str]) -> None:
        """Pre-existing state: what earlier (processed) dates left behind."""
        inj = base / "InjSigTimeCal"
        bosse = self.layout.bosse
        processed = [d for d in rnd.dates if d.processed]
        runs = sorted({r for d in processed for r in d.runs})
        noise = set(self.layout.noise_runs)
        _write(inj / "interval.txt", "".join(f"{r} 15000000\n" for r in runs))
        window = f"{runs[0]}     0.50     4.20     21.80     22.40\n" if runs else ""
        ets = "".join(f"{r}   1200.500   1201.700\n" for r in runs[:1])
        sp = base / STAGE_DIRS["search_peak"][0]
        et = base / STAGE_DIRS["ETS_cut"][0]
        _write(sp / "window.dat", window)
        _write(et / "ets_cut.txt", ets)
        for spec in processed:
            day = inj / spec.date
            day.mkdir(parents=True, exist_ok=True)
            second = base / spec.date
            second.mkdir(parents=True, exist_ok=True)
            for run in spec.runs:
                _write(day / f"rec{run}_1.txt", f"// first-pass job options of run {run}\n", 0o755)
                _write(day / f"rec{run}_1.txt.bosslog", "ApplicationMgr Stopped successfully\n")
                _write(day / f"rec{run}_1.txt.bosserr", "")
                values = "".join(
                    f"{n:>25}{15000000:>25}\n"
                    for n in (
                        "interval_before_sorting",
                        "interval_From_DB",
                        "interval_after_sorting",
                    )
                )
                _write(day / f"Interval_run{run}.txt", f"{run:>25}\n{values}")
                _write(inj / "calibConst" / f"InjSigTime_00{run}_{bosse}.root", f"root IST {run}\n")
                _write(base / "hist/tmp" / f"hist{run:05d}.root", f"root hist {run}\n")
                (second / str(run)).mkdir(exist_ok=True)
                _write(
                    second / str(run) / f"rec{run}_0", f"// second-pass job of run {run}\n", 0o755
                )
                _write(sp / "raw_shield" / f"shield_run{run}.txt", f"{run}\n")
                if run in noise:
                    _write(et / "tmp" / f"shield{run}.txt", f"{run}   1200.500   1201.700\n")
            _write(second / "mergeHist.sh", "", 0o755)
        if processed:
            snapshot = str(int(processed[-1].date) + 1)
            _write(inj / "InjSigIntervalCal" / snapshot, (inj / "interval.txt").read_text())
            _write(sp / "time_final" / snapshot, window)
            _write(base / "Determining_ETS_cut/ETScutCalibConst" / snapshot, ets)


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


def _hand_over(root: Path) -> None:
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


def build_site(root: Path, layout: SiteLayout | None = None) -> SimSite:
    """Create the simulated site under ``root`` (which must be empty or absent)."""
    root = Path(root).resolve()
    text = str(root)
    if not SAFE_ROOT_RE.match(text) or any(p in text for p in PLACEHOLDERS):
        raise SiteBuildError(f"unsuitable root path for the simulated site: {text!r}")
    if root.exists() and any(root.iterdir()):
        raise SiteBuildError(f"{root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    site = SimSite(root, layout or default_layout())
    _Builder(site).build()
    write_faults(root, Faults(noise_runs=site.layout.noise_runs))
    _write(site.state_dir / "layout.json", site.layout.model_dump_json(indent=1) + "\n")
    _hand_over(root)
    return site


def remove_site(site: SimSite) -> None:
    """Stop everything of the tree, then delete it."""
    site.stop_jobs()
    shutil.rmtree(site.root, ignore_errors=True)
