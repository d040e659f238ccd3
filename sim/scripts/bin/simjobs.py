"""What the simulated batch jobs and ROOT tools produce.

boss.condor jobs (steps 1-2) are BOSS job-option files: the job reads its options (output
names, input raw files, interval, IST file) and writes what BOSS would. hep_sub jobs
(steps 3-6) are one-line shell files ``<dir>/a.out <hist dir> <run>``: the job runs them, and
the ``a.out`` of each stage directory is `aout()` below. Outputs are written atomically, the
logs last: a log file means "the job ended" — unless the ``logs_at_start`` fault makes the
logs appear when the job starts (a shared filesystem may), when only the batch system's
state (hep_q) tells a running job from an ended one.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import simimg
from simcommon import (
    BREAK_LINES,
    atomic_write,
    base_of_hist,
    faults,
    hook,
    job_seconds,
    now_text,
    register_proc,
    stage_runs,
    state_write,
    unregister_proc,
    wait,
)

STAGE_DIRS = {
    "search_peak": "3",
    "checkShieldCalib": "4",
    "ETS_cut": "5",
    "check_ETScut_CalibConst": "6",
}
NONTOPUP = 15000000


# ---------------------------------------------------------------------------------------
# helpers


def root_file(kind: str, run: int, extra: str = "", size: int = 2048) -> bytes:
    """A placeholder ROOT file: the magic, a readable header, padding to ``size``."""
    head = f"root\x00\x00\xf9\xff simulated {kind} run {run} {extra}\n".encode()
    rng = random.Random(run * 7 + len(kind))
    body = bytes(rng.getrandbits(8) for _ in range(max(0, size - len(head))))
    return head + body


def emit(path: Path, data: bytes | str, empty: bool) -> None:
    atomic_write(path, b"" if empty else data)


def parse_options(text: str) -> dict[str, str]:
    """``Alg.prop = "value";`` assignments of a BOSS job-option file."""
    opts: dict[str, str] = {}
    for m in re.finditer(r"^\s*([\w.]+)\s*=\s*(\"[^\"]*\"|[^;{]+)\s*;", text, re.M):
        opts[m.group(1)] = m.group(2).strip().strip('"')
    return opts


def input_files(text: str) -> list[str]:
    m = re.search(r"RawDataInputSvc\.InputFiles\s*=\s*\{(.*?)\}", text, re.S)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def interval_value(base: Path, run: int) -> int | None:
    try:
        lines = (base / "InjSigTimeCal" / "interval.txt").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == str(run):
            try:
                return int(fields[1])
            except ValueError:
                return None
    return None


def first_line_values(path: Path, run: int) -> list[float] | None:
    """Numbers after the run on the first line of ``path`` that starts with ``run``."""
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == str(run):
            try:
                return [float(x) for x in fields[1:]]
            except ValueError:
                return []
    return None


def shield_windows(run: int) -> list[float]:
    """Step-3 windows in ms: the injection peak and two 50 Hz noise windows."""
    rng = random.Random(run)
    lo = round(0.44 + rng.random() * 0.1, 2)
    hi = round(4.1 + rng.random() * 0.2, 2)
    n1 = round(21.7 + rng.random() * 0.2, 2)
    n2 = round(41.7 + rng.random() * 0.2, 2)
    return [lo, hi, n1, round(n1 + 0.6, 2), n2, round(n2 + 0.6, 2)]


def ets_windows(run: int) -> list[float]:
    """Step-5 windows in seconds of absolute event time: two noise bursts."""
    rng = random.Random(run * 3)
    a = round(100 + rng.random() * 1500, 3)
    b = round(a + 800 + rng.random() * 500, 3)
    return [a, round(a + 1.2, 3), b, round(b + 0.75, 3)]


# ---------------------------------------------------------------------------------------
# the job runner


def run_job(job_dir: Path) -> None:
    """One job, in a scheduler thread: wait, then outputs, then logs; nothing once removed."""
    from simbatch import read_state, set_state

    spec: dict[str, Any] = json.loads((job_dir / "spec.json").read_text())

    def alive() -> bool:
        return read_state(job_dir) != "X"

    cwd = Path(spec["cwd"])
    jobfile = cwd / spec["jobfile"]
    f = faults()
    try:
        text = jobfile.read_text(errors="replace")
    except OSError:
        text = ""
    if spec["kind"] == "boss.condor":
        stage, run = classify_boss(spec["jobfile"], text)
    else:
        stage, run = classify_hep(text)
    if run is not None and run in stage_runs(f, "held", stage):
        set_state(job_dir, "H")  # never starts: hep_q shows H until hep_rm
        while wait(3600, alive):
            pass
        return
    if f.get("logs_at_start"):
        start_logs(job_dir, spec, cwd, jobfile, run)
    if run is not None and run in stage_runs(f, "never_finish", stage):
        while wait(3600, alive):
            pass
        return
    if not wait(job_seconds(f, stage, run), alive):
        return
    failed = run is not None and run in stage_runs(f, "fail", stage)
    empty = run is not None and run in stage_runs(f, "empty_output", stage)
    crashed = run is not None and run in stage_runs(f, "crash", stage)
    if crashed:
        crash_job(job_dir, spec, cwd, jobfile, text, stage, run, f)
    elif spec["kind"] == "boss.condor":
        boss_job(spec, cwd, jobfile, text, stage, run, f, failed, empty, alive)
    else:
        hep_job(job_dir, spec, cwd, jobfile, run, failed, empty, alive)
    if alive():
        set_state(job_dir, "C")


def log_names(spec: dict[str, Any], cwd: Path, jobfile: Path) -> tuple[Path, Path]:
    """(log, error log) of a job: ``.bosslog``/``.bosserr`` (boss.condor) or
    ``.out.<cluster>.<proc>``/``.err.<cluster>.<proc>`` (hep_sub), next to the job file."""
    if spec["kind"] == "boss.condor":
        return cwd / f"{jobfile.name}.bosslog", cwd / f"{jobfile.name}.bosserr"
    tag = f"{spec['cluster']}.{spec['proc']}"
    return cwd / f"{jobfile.name}.out.{tag}", cwd / f"{jobfile.name}.err.{tag}"


def start_logs(
    job_dir: Path, spec: dict[str, Any], cwd: Path, jobfile: Path, run: int | None
) -> None:
    """``logs_at_start``: the logs exist (log head, empty error log) once the job starts."""
    log, err = log_names(spec, cwd, jobfile)
    if spec["kind"] == "boss.condor":
        atomic_write(log, "\n".join(_bosslog_head(spec, run)) + "\n")
    else:
        env = _job_env(job_dir)
        atomic_write(log, f"INFO: Using ROUND_NUMBER={env.get('ROUND_NUMBER', '18')}\n")
    atomic_write(err, "")


def crash_job(
    job_dir: Path,
    spec: dict[str, Any],
    cwd: Path,
    jobfile: Path,
    text: str,
    stage: str,
    run: int | None,
    f: dict[str, Any],
) -> None:
    """The ``crash`` fault: outputs opened but left empty, the crash line in the error log,
    a log that stops in the middle of the event loop."""
    for name in crash_outputs(spec, stage, run, text):
        atomic_write(cwd / name, b"")
    line = str(f.get("crash_line") or "terminate called")
    log, err = log_names(spec, cwd, jobfile)
    if spec["kind"] == "boss.condor":
        head = _bosslog_head(spec, run)
        body = [*head, "EventLoopMgr         INFO processing events"]
    else:
        env = _job_env(job_dir)
        body = [f"INFO: Using ROUND_NUMBER={env.get('ROUND_NUMBER', '18')}", f"run: {run}"]
    atomic_write(err, f"{line}\n")
    atomic_write(log, "\n".join(body) + "\n")


def crash_outputs(spec: dict[str, Any], stage: str, run: int | None, text: str) -> list[str]:
    """The outputs a crashed job of ``stage`` leaves behind, empty."""
    if run is None:
        return []
    if stage == "1":
        opts = parse_options(text)
        txt = opts.get("GetTIntervalAlg.output", f"Interval_run{run}.txt")
        ets = opts.get("GetRawETS.ETS_FILE", f"InjSigTime_00{run}_720.root")
        return [ets, txt.replace(".txt", ".png"), txt]
    if stage == "2":
        m = re.search(r"DATAFILE='([^']+)'", text)
        return [m.group(1) if m else f"hist{run}_{spec['proc']}.root"]
    return {
        "3": [f"shield_run{run}.txt"],
        "4": [],
        "5": [f"run{run}_cut.png", f"run{run}_total.png"],
        "6": [f"run{run}.png", f"run{run}.root"],
    }.get(stage, [])


def classify_boss(name: str, text: str) -> tuple[str, int | None]:
    m = re.match(r"rec(\d+)_1\.txt$", name)
    if m and "GetTIntervalAlg" in text:
        return "1", int(m.group(1))
    m = re.match(r"rec(\d+)_(\d+)$", name)
    if m:
        return "2", int(m.group(1))
    if "GetTIntervalAlg" in text:
        m = re.search(r"Interval_run(\d+)", text)
        return "1", int(m.group(1)) if m else None
    m = re.search(r"DATAFILE='hist(\d+)_", text)
    return ("2", int(m.group(1))) if m else ("0", None)


def classify_hep(text: str) -> tuple[str, int | None]:
    words = text.split()
    if not words:
        return "0", None
    stage = STAGE_DIRS.get(Path(words[0]).parent.name, "0")
    run = int(words[-1]) if words[-1].isdigit() else None
    return stage, run


def _bosslog_head(spec: dict[str, Any], run: int | None) -> list[str]:
    submitted = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(spec["time"]))
    return [
        f"Job {spec['cluster']}.{spec['proc']} submitted at {submitted}",
        f"Job started on host bws{(spec['cluster'] % 900) + 100:04d}.ihep.ac.cn at {now_text()}",
        "BOSS version: 7.2.0",
        f"run number: {run}",
        "**************************************************",
        "               BOSS version 7.2.0",
        "**************************************************",
        "ApplicationMgr    SUCCESS",
        "====================================================================================",
        "                                                   Welcome to ApplicationMgr",
        "                                          running on beslogin (simulated)",
        "====================================================================================",
        "ApplicationMgr       INFO Application Manager Configured successfully",
        "DatabaseSvc          INFO Connecting to offlinedb (read only)",
    ]


def boss_job(
    spec: dict[str, Any],
    cwd: Path,
    jobfile: Path,
    text: str,
    stage: str,
    run: int | None,
    f: dict[str, Any],
    failed: bool,
    empty: bool,
    alive: Any,
) -> None:
    log = _bosslog_head(spec, run)
    err: list[str] = []
    opts = parse_options(text)
    problem = ""
    if stage == "1":
        for raw in input_files(text):
            if not Path(raw).is_file():
                problem = f"RawFileReader       ERROR can not open raw data file {raw}"
                break
        if not input_files(text):
            problem = "RawDataInputSvc     ERROR no input file given"
    elif stage == "2":
        if re.search(r"=\s*INTERVAL\s*;", text):
            problem = "JobOptionsSvc       ERROR #(12) parse error: INTERVAL is not a value"
        ist = opts.get("CalibRootCnvSvc.InjSigTimerootfile", "")
        if not problem and ist and not Path(ist).is_file():
            problem = f"CalibRootCnvSvc     ERROR can not open the InjSigTime file {ist}"
        raws = re.findall(r'RawDataInputSvc\.InputFiles\s*=\s*\{\s*"([^"]+)"', text)
        if not problem and raws and not Path(raws[0]).is_file():
            problem = f"RawFileReader       ERROR can not open raw data file {raws[0]}"
    else:
        problem = "JobOptionsSvc       ERROR unknown job options (no known algorithm)"
    if failed:
        log += [
            "GetRawETS::execute() m_interval = 60",
            "EventLoopMgr         INFO processing events",
        ]
        err.append(BREAK_LINES)
    elif problem:
        log += [problem, "ApplicationMgr      FATAL Error initializing the job, job aborted"]
        err.append(problem)
    elif stage == "1":
        log += stage1_outputs(cwd, text, opts, run or 0, f, empty)
    else:
        log += stage2_outputs(cwd, dict(opts, _text=text), run or 0, f, empty, alive)
    if not alive():  # removed meanwhile: a removed job writes no logs
        return
    err_name = cwd / f"{jobfile.name}.bosserr"
    log_name = cwd / f"{jobfile.name}.bosslog"
    if stage == "1" and not failed and not problem:
        png = opts.get("GetTIntervalAlg.output", f"Interval_run{run}.txt").replace(".txt", ".png")
        err_text = (
            "Error in <TGraphPainter::PaintGraph>: illegal number of points (0)\n"
            f"Info in <TCanvas::Print>: png file {png} has been created\n"
        )
    elif stage == "2" and not failed and not problem:
        err_text = "".join(
            "Error in <TCling::LoadPCM>: ROOT PCM /cvmfs/bes3.ihep.ac.cn/bes3sw/Boss/7.2.0/"
            f"InstallArea/x86_64-slc6-gcc46-opt/lib/lib{lib}_rdict.pcm file does not exist\n"
            for lib in ("RootEventData", "DstEvent")
        )
    else:
        err_text = "\n".join(err) + "\n"
    atomic_write(err_name, err_text)
    atomic_write(log_name, "\n".join(log) + "\n")


def _interval_txt(run: int, values: list[int]) -> str:
    names = ("interval_before_sorting", "interval_From_DB", "interval_after_sorting")
    lines = [f"{run:>25}"] + [f"{n:>25}{v:>25}" for n, v in zip(names, values, strict=True)]
    return "\n".join(lines) + "\n"


def stage1_outputs(
    cwd: Path, text: str, opts: dict[str, str], run: int, f: dict[str, Any], empty: bool
) -> list[str]:
    ist = (f.get("ist") or {}).get(str(run), NONTOPUP)
    values = list(ist) if isinstance(ist, list) else [int(ist)] * 3
    txt_name = opts.get("GetTIntervalAlg.output", f"Interval_run{run}.txt")
    ets_name = opts.get("GetRawETS.ETS_FILE", f"InjSigTime_00{run}_720.root")
    png_name = txt_name.replace(".txt", ".png")
    emit(cwd / ets_name, root_file("InjSigTime", run, "TTree ETS/IST"), empty)
    png = simimg.plot_png(996, 772, run, f"Interval run{run}", salt=1)
    emit(cwd / png_name, png, empty)
    emit(cwd / txt_name, _interval_txt(run, values), empty)
    if cwd.name in [str(d) for d in f.get("interval_run0") or []]:
        emit(cwd / "Interval_run0.png", simimg.plot_png(996, 772, 0, "Interval run0"), empty)
    log = []
    rng = random.Random(run)
    for raw in input_files(text):
        log.append(f"[RawFile] Prepare for reading: {raw}")
        for k in range(30):
            log.append(
                f"GetRawETS::execute() m_interval = 60   evt {k * 1000 + rng.randint(0, 999):>7}"
                f"  ets {rng.randint(10**9, 2 * 10**9)}"
            )
    log += [
        "[RawFile] Congratulations. Reach end of data file list !",
        f"GetTIntervalAlg      INFO interval_before_sorting = {values[0]}",
        f"GetTIntervalAlg      INFO interval_From_DB = {values[1]}",
        f"GetTIntervalAlg      INFO interval_after_sorting = {values[2]}",
        f"GetTIntervalAlg      INFO write {txt_name}",
        f"GetRawETS            INFO write {ets_name}",
        "ApplicationMgr       INFO Application Manager Stopped successfully",
        "ApplicationMgr Stopped successfully",
        "ApplicationMgr       INFO Application Manager Finalized successfully",
        "ApplicationMgr       INFO Application Manager Terminated successfully",
    ]
    return log


def stage2_outputs(
    cwd: Path, opts: dict[str, str], run: int, f: dict[str, Any], empty: bool, alive: Any
) -> list[str]:
    m = re.search(r"DATAFILE='([^']+)'", opts.get("_text", ""))
    name = m.group(1) if m else f"hist{run}_0.root"
    data = root_file("ntuple", run, f"{name} TTree event", size=6144 + (run % 7) * 512)
    target = cwd / name
    if empty:
        atomic_write(target, b"")
    elif run in {int(r) for r in f.get("growing") or []}:
        chunks = 4
        step = max(1, len(data) // chunks)
        with open(target, "wb") as fh:
            for i in range(chunks):
                fh.write(data[i * step : (i + 1) * step if i < chunks - 1 else len(data)])
                fh.flush()
                if not wait(float(f.get("grow_seconds", 1.0)) / chunks, alive):
                    return ["job removed while writing"]
    else:
        atomic_write(target, data)
    interval = opts.get("ResetEtsAlg.InjSigInterval", "?")
    return [
        f"ResetEtsAlg          INFO InjSigInterval = {interval}",
        f"OfflineEvtFilterCalibAlg INFO fill ntuple {name}",
        "EventLoopMgr         INFO No more events in event selection",
        "ApplicationMgr       INFO Application Manager Stopped successfully",
        "ApplicationMgr       INFO Application Manager Finalized successfully",
        "Application Manager Terminated successfully",
        f"{4 + run % 3}.941u 0.495s 0:14.15 38.3%\t0+0k 0+0io 0pf+0w",
    ]


def _job_env(job_dir: Path) -> dict[str, str]:
    """The submitter's environment (saved by simsubmit.sh with `env -0`)."""
    env: dict[str, str] = {}
    try:
        raw = (job_dir / "env").read_bytes()
    except OSError:
        return dict(os.environ)
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key:
            env[key] = value
    return env


def hep_job(
    job_dir: Path,
    spec: dict[str, Any],
    cwd: Path,
    jobfile: Path,
    run: int | None,
    failed: bool,
    empty: bool,
    alive: Any,
) -> None:
    """Run the job file with bash in its own process group; logs renamed into place last."""
    out_final, err_final = log_names(spec, cwd, jobfile)
    if faults().get("logs_at_start"):  # written in place, as the job goes
        out_tmp, err_tmp = out_final, err_final
    else:
        out_tmp = cwd / f".{out_final.name}.simtmp"
        err_tmp = cwd / f".{err_final.name}.simtmp"
    env = _job_env(job_dir)
    if failed:
        atomic_write(out_tmp, f"INFO: Using ROUND_NUMBER={env.get('ROUND_NUMBER', '18')}\n{run}\n")
        atomic_write(err_tmp, BREAK_LINES)
    else:
        if empty:
            env["SIM_EMPTY_OUTPUT"] = "1"
        with open(out_tmp, "wb") as out, open(err_tmp, "wb") as err:
            proc = subprocess.Popen(
                ["/bin/bash", str(jobfile)],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,
            )
            state_write(job_dir / "proc", f"{proc.pid}\n")
            if not alive():  # removed between the check and the start
                os.killpg(proc.pid, 9)
            proc.wait()
    if out_tmp == out_final:
        return
    if not alive():
        for tmp in (out_tmp, err_tmp):
            try:
                tmp.unlink()
            except OSError:
                pass
        return
    os.replace(err_tmp, err_final)
    os.replace(out_tmp, out_final)


# ---------------------------------------------------------------------------------------
# the a.out programs of steps 3-6 (run by the hep_sub jobs)


def aout(stage: str, argv: list[str]) -> int:
    if len(argv) < 2 or not argv[-1].isdigit():
        print("usage: a.out <ntuple path> <run number>")
        return 1
    hist_dir, run = argv[0], int(argv[1])
    empty = os.environ.get("SIM_EMPTY_OUTPUT") == "1"
    base = base_of_hist(hist_dir)
    hist = Path(hist_dir) / f"hist{run:05d}.root"
    cwd = Path.cwd()
    f = faults()
    print(f"INFO: Using ROUND_NUMBER={os.environ.get('ROUND_NUMBER', '18')}")
    print(f"run: {run}")
    noise = run in {int(r) for r in f.get("noise_runs") or []}

    if stage == "3":
        shield = cwd / f"shield_run{run}.txt"
        if not shield.exists():
            shield.touch()  # the C++ opens its output before checking its inputs
        if not hist.is_file() or hist.stat().st_size == 0:
            print(f"can not access the file {hist}")
            return 255
        if (
            interval_value(base, run) is None
            and not (base / "InjSigTimeCal" / "interval.txt").is_file()
        ):
            print(f"can not open {base / 'InjSigTimeCal' / 'interval.txt'}")
            return 255
        if noise:
            values = shield_windows(run)
            emit(cwd / f"run{run}.root", root_file("canvas", run, "MDC vs dT"), empty)
            emit(shield, f"{run}" + "".join(f"     {v:.2f}" for v in values) + "\n", empty)
            print(f"found {len(values) // 2} windows")
        else:
            print("This is a non-topup run")
            emit(shield, f"{run}\n", empty)
        return 0

    if not hist.is_file() or hist.stat().st_size == 0:
        print(f"can not access the file {hist}")
        return 255

    if stage == "4":
        window_dat = base / "Determining_50Hz_cut" / "search_peak" / "window.dat"
        try:
            values = first_line_values(window_dat, run)
        except OSError:
            print(f"can not open {window_dat}")
            return 255
        if not values:
            print("This is a non-topup run")
            return 0
        pairs = list(zip(values[0::2], values[1::2], strict=False))
        for i, name in enumerate(("cut_detail", "after_cut", "before_cut", "check")):
            png = simimg.plot_png(796, 572, run, f"run{run} {name}", windows=pairs, salt=10 + i)
            emit(cwd / f"run{run}_{name}.png", png, empty)
        rng = random.Random(run)
        total = rng.randint(40000, 90000)
        removed = int(total * rng.uniform(0.01, 0.045))
        k5 = rng.randint(80, 200)
        print(f"remove ratio: {100.0 * removed / total:.2f}%")
        print(f"remove_num / TotalEvent = {removed} / {total}")
        print(f"num_5k_Incut / num_5k_total = {int(k5 * 0.9)} / {k5}")
        return 0

    if stage == "5":
        cut = simimg.plot_png(1196, 672, run, f"run{run} all_ETS(s)", panels=2, salt=20)
        total = simimg.plot_png(1296, 672, run, f"run{run} before/after cut", panels=2, salt=21)
        emit(cwd / f"run{run}_cut.png", cut, empty)
        emit(cwd / f"run{run}_total.png", total, empty)
        if noise:
            values = ets_windows(run)
            emit(cwd / f"run{run}.root", root_file("canvas", run, "ETS windows"), empty)
            emit(
                cwd / str(f.get("ets_shield_name") or "shield{run}.txt").replace("{run}", str(run)),
                f"{run}" + "".join(f"   {v:.3f}" for v in values) + "\n",
                empty,
            )
            print(f"noise_standard1 = 600000, {len(values) // 2} windows")
        else:
            print("no noise region found")
        return 0

    if stage == "6":
        ets_cut = base / "Determining_ETS_cut" / "ETS_cut" / "ets_cut.txt"
        try:
            values = first_line_values(ets_cut, run) or []
        except OSError:
            print(f"ERROR: Cannot open {ets_cut}")
            return 255
        n = len(values) // 2
        png = simimg.plot_png(1496, 1172, run, f"run{run}", panels=2, salt=30, label=f"windows:{n}")
        emit(cwd / f"run{run}.png", png, empty)
        emit(cwd / f"run{run}.root", root_file("canvas", run, f"windows:{n}"), empty)
        sys.stderr.write(f"Info in <TCanvas::Print>: png file run{run}.png has been created\n")
        sys.stderr.write(f"Info in <TCanvas::SaveAs>: ROOT file run{run}.root has been created\n")
        print(f"windows:{n}")
        return 0
    print(f"unknown stage {stage}")
    return 1


# ---------------------------------------------------------------------------------------
# ROOT stand-in: root -q -b -l "drawcheck.c(run)" (hadd is a bash script)


def root_cmd(argv: list[str]) -> int:
    """`root -q -b -l "drawcheck.c(85383)"`: draws check{run}.png after draw_seconds."""
    rc = hook(["root"])
    if rc:
        return rc
    macro = next((a for a in argv if not a.startswith("-")), None)
    if macro is None:
        print("ROOT 6.xx (simulated): interactive sessions are not supported")
        return 0
    m = re.match(r"^([\w.]+\.[cC]+)\((\d+)\)$", macro)
    if not m or not Path(m.group(1)).is_file():
        name = m.group(1) if m else macro
        sys.stderr.write(f"Error in <TApplication::ExecuteFile>: macro {name} not found in path\n")
        return 0
    run = int(m.group(2))
    marker = register_proc()
    try:
        print(f"\nProcessing {macro}...")
        sys.stdout.flush()
        if not wait(float(faults().get("draw_seconds", 0.2))):
            return 1
        hist = Path(f"hist{run:05d}.root")
        if not hist.is_file() or hist.stat().st_size == 0:
            sys.stderr.write(f"Error in <TFile::TFile>: file {hist} does not exist\n")
            return 0
        png = simimg.plot_png(1796, 772, run, f"run{run}", panels=3, salt=40)
        atomic_write(Path(f"check{run}.png"), png)
        sys.stderr.write(f"Info in <TCanvas::Print>: png file check{run}.png has been created\n")
        return 0
    finally:
        unregister_proc(marker)
