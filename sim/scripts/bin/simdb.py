"""Step-8 programs of the simulated site: the OfflineEvtFilter tools and genInsertCmd.sh.

The real programs are not public (steps-7-8.md §0); these follow their names and the
step's expectations: `ccompare/a.out` reports repeated / out-of-order / missing runs as
``run N Error:  Repeat|Order|Miss``, `check/a.out` is silent when every file is there, and
``genInsertCmd.sh -sub_switch 1`` appends one JSON line per inserted row to
``.sim/db_ledger.log`` at the moment the row is inserted (so a submission that dies half-way
leaves exactly the rows it inserted), and a ``begin`` / ``end`` line per submission to
``.sim/db_submissions.log`` (no ``end`` line: the process died). Faults
``db_kill_after_rows`` / ``db_fail_after_rows`` stop a submission after N rows.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from simcommon import LEDGER, STATE, append_line, atomic_write, faults, hook

SUBMISSIONS_LOG = STATE / "db_submissions.log"

TABLES = {
    "InjSigInterval": ("InjSigIntervalCalConst", re.compile(r"^InjSigInterval_(\d+)_(\d+)\.root$")),
    "InjSigTime": ("InjSigTimeCalConst", re.compile(r"^InjSigTime_00(\d+)_\d+\.root$")),
    "OfflineEvtFilter": (
        "OfflineEvtFilterCalConst",
        re.compile(r"^OfflineEvtFilter_00(\d+)_\d+\.root$"),
    ),
}


def read_runs(path: Path) -> list[tuple[int, str]]:
    """(run, rest of line) for every line of a run table that starts with a number."""
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0].isdigit():
            out.append((int(fields[0]), " ".join(fields[1:])))
    return out


def duration(argv: list[str]) -> int:
    """duration_caculate/a.out: run durations from the copied interval.txt."""
    rc = hook(["a.out", "duration_caculate/a.out"])
    if rc:
        return rc
    src = Path("../interval.txt")
    try:
        runs = read_runs(src)
    except OSError:
        print(f"ERROR: cannot open {src}")
        return 1
    lines = []
    total = 0
    for run, _rest in runs:
        seconds = 1800 + (run * 37) % 1900
        total += seconds
        lines.append(f"{run} {seconds}")
    atomic_write(Path("duration.txt"), "\n".join(lines) + ("\n" if lines else ""))
    print(f"{len(runs)} runs, total duration {total} s, written to duration.txt")
    return 0


def ccompare(argv: list[str]) -> int:
    """ccompare/a.out: consistency of interval.txt, window.dat and ets_cut.txt."""
    rc = hook(["a.out", "ccompare/a.out"])
    if rc:
        return rc
    try:
        interval = read_runs(Path("../interval.txt"))
        window = read_runs(Path("../window.dat"))
        ets = read_runs(Path("../ets_cut.txt"))
    except OSError as exc:
        print(f"ERROR: cannot open {exc.filename}")
        return 1
    problems: list[str] = []
    seen: set[int] = set()
    previous = -1
    for run, _rest in interval:
        if run in seen:
            problems.append(f"run {run} Error:  Repeat")
        elif run < previous:
            problems.append(f"run {run} Error:  Order")
        seen.add(run)
        previous = max(previous, run)
    for run in sorted({r for r, _ in window} | {r for r, _ in ets}):
        if run not in seen:
            problems.append(f"run {run} Error:  Miss")
    for line in problems:
        print(line)
    print(f"compared {len(seen)} runs of interval.txt with window.dat and ets_cut.txt")
    return 0


def offline_const(argv: list[str]) -> int:
    """OfflineEvtFilter/a.out <bosse> <from> <to>: one constant file per run in range."""
    rc = hook(["a.out", "OfflineEvtFilter/a.out"])
    if rc:
        return rc
    if len(argv) != 3 or not all(a.isdigit() for a in argv):
        print("usage: a.out <boss version, e.g. 720> <run_from> <run_to>")
        return 1
    bosse, lo, hi = argv[0], int(argv[1]), int(argv[2])
    try:
        interval = read_runs(Path("interval.txt"))
    except OSError:
        print("ERROR: cannot open interval.txt (run cp_3files.sh first)")
        return 1
    windows = {r: rest for r, rest in _safe_runs(Path("window.dat"))}
    ets = {r: rest for r, rest in _safe_runs(Path("ets_cut.txt"))}
    runs = sorted({r for r, _ in interval if lo <= r <= hi})
    if not runs:
        print(f"ERROR: no run between {lo} and {hi} in interval.txt")
        return 1
    values = dict(interval)
    for run in runs:
        name = f"OfflineEvtFilter_00{run}_{bosse}.root"
        body = (
            f"root\x00\x00\xf9\xff OfflineEvtFilter run {run}\n"
            f"interval {values.get(run, '')}\nwindows {windows.get(run, '')}\n"
            f"ets_cut {ets.get(run, '')}\n"
        )
        atomic_write(Path(name), body)
        print(f"generate {name}")
    return 0


def _safe_runs(path: Path) -> list[tuple[int, str]]:
    try:
        return read_runs(path)
    except OSError:
        return []


def check(argv: list[str]) -> int:
    """check/a.out <bosse> <from> <to>: silent when every run's file is listed and sane."""
    rc = hook(["a.out", "check/a.out"])
    if rc:
        return rc
    if len(argv) != 3 or not all(a.isdigit() for a in argv):
        print("usage: a.out <boss version> <run_from> <run_to>")
        return 1
    bosse, lo, hi = argv[0], int(argv[1]), int(argv[2])
    try:
        listed = {Path(x).name for x in Path("file.txt").read_text().split()}
    except OSError:
        print("ERROR: cannot open file.txt")
        return 1
    runs = sorted({r for r, _ in _safe_runs(Path("../interval.txt")) if lo <= r <= hi})
    for run in runs:
        name = f"OfflineEvtFilter_00{run}_{bosse}.root"
        path = Path("..") / name
        if name not in listed:
            print(f"run {run}: {name} is not in file.txt")
        elif not path.is_file() or path.stat().st_size == 0:
            print(f"run {run}: {name} is missing or empty")
    return 0


def geninsert(argv: list[str]) -> int:
    """genInsertCmd.sh <kind> <boss> <round> -runfrom F -runto T -sub_switch 0|1."""
    kind, boss, round_, *args = argv
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        if args[i].startswith("-") and i + 1 < len(args):
            opts[args[i].lstrip("-")] = args[i + 1]
            i += 2
        else:
            i += 1
    switch = opts.get("sub_switch", "")
    names = ["genInsertCmd.sh", f"{kind}/genInsertCmd.sh"]
    names += [f"{n}:{switch}" for n in names]
    rc = hook(names)
    if rc:
        return rc
    lo_s, hi_s = opts.get("runfrom", ""), opts.get("runto", "")
    if not (lo_s.isdigit() and hi_s.isdigit()) or switch not in ("0", "1"):
        print("Usage: genInsertCmd.sh -runfrom <run> -runto <run> -sub_switch <0|1>")
        return 1
    lo, hi = int(lo_s), int(hi_s)
    table, pattern = TABLES[kind]
    here = Path.cwd()
    files = []
    for path in sorted(here.iterdir()):
        m = pattern.match(path.name)
        if not m:
            continue
        first = int(m.group(1))
        last = int(m.group(2)) if kind == "InjSigInterval" else first
        if first <= hi and last >= lo:
            files.append((path, first, last))
    if not files:
        print(f"ERROR: no {kind} constant file for runs {lo}-{hi} in {here}")
        return 1
    statements = [
        f"insert into {table} (SftVer,ParVer,RunFrom,RunTo,FileName,Status) values "
        f"('{boss}',1,{first},{last},'{path}','OK');"
        for path, first, last in files
    ]
    if switch == "0":
        print(f"# {len(files)} insert(s) planned into {table} for runs {lo}-{hi} (not submitted)")
        for s in statements:
            print(s)
        return 0
    return submit(kind, table, boss, round_, lo, hi, files, statements)


def _row_limit(knob: object, kind: str, table: str) -> int | None:
    """Rows after which a fault stops the submission (by part name or table name)."""
    if not isinstance(knob, dict):
        return None
    for name in (kind, table):
        if name in knob and knob[name] is not None:
            return max(0, int(knob[name]))
    return None


def submit(
    kind: str,
    table: str,
    boss: str,
    round_: str,
    lo: int,
    hi: int,
    files: list[tuple[Path, int, int]],
    statements: list[str],
) -> int:
    """``-sub_switch 1``: insert row by row, each row recorded when it is inserted."""
    f = faults()
    kill_after = _row_limit(f.get("db_kill_after_rows"), kind, table)
    fail_after = _row_limit(f.get("db_fail_after_rows"), kind, table)
    user = getpass.getuser()
    pid = os.getpid()
    submission = f"{pid}-{time.time_ns()}"
    head = {
        "submission": submission,
        "pid": pid,
        "kind": kind,
        "table": table,
        "run_from": lo,
        "run_to": hi,
    }

    def event(name: str, **extra: object) -> None:
        record = dict(head, event=name, time=time.time(), **extra)
        append_line(SUBMISSIONS_LOG, json.dumps(record, sort_keys=True))

    def stop(rows: int) -> int | None:
        """Apply the faults once ``rows`` rows are in (None: go on)."""
        if kill_after is not None and rows >= kill_after:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(pid, signal.SIGKILL)  # exit 137 for the caller; no end line anywhere
        if fail_after is not None and rows >= fail_after:
            print(f"inserted {rows} of {len(files)} record(s) into {table}")
            sys.stderr.write(f"ERROR: lost the connection to the database after {rows} row(s)\n")
            event("end", rows=rows, exit_status=1)
            return 1
        return None

    event("begin", rows_planned=len(files), user=user)
    for row, ((path, first, last), statement) in enumerate(zip(files, statements, strict=True)):
        rc = stop(row)
        if rc is not None:
            return rc
        record = {
            "time": time.time(),
            "kind": kind,
            "table": table,
            "boss": boss,
            "round": None if round_ == "-" else round_,
            "run_from": lo,
            "run_to": hi,
            "file": str(path),
            "file_run_from": first,
            "file_run_to": last,
            "run": first,
            "values": {
                "SftVer": boss,
                "ParVer": 1,
                "RunFrom": first,
                "RunTo": last,
                "FileName": str(path),
                "Status": "OK",
            },
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "user": user,
            "statement": statement,
            "submission": submission,
            "pid": pid,
            "row": row + 1,
            "rows_planned": len(files),
        }
        append_line(LEDGER, json.dumps(record, sort_keys=True))
        print(f"inserted: {statement}")
        sys.stdout.flush()
    rc = stop(len(files))
    if rc is not None:
        return rc
    print(f"{len(files)} record(s) inserted into {table}")
    sys.stdout.flush()
    event("end", rows=len(files), exit_status=0)
    return 0
