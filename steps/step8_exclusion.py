"""Setting aside the runs of a failed date before constants reach the offline database.

Why: steps 1.2/1.3, 3.2 and 5.2 write a date's runs into the round's cumulative files as they
go (``INJ/interval.txt`` lines, ``calibConst/InjSigTime_00{run}_{bosse}.root``,
``search_peak/window.dat``, ``ETS_cut/ets_cut.txt``). When the date later fails, those runs
stay there and step 8 would submit them (its range is the first and last line of
``interval.txt``, its InjSigTime part moves every ``InjSigTime_00*`` file of calibConst). When
an operator decides to exclude such runs, ``set_aside_runs`` takes them out, keeping
everything it touches:

- from each cumulative file, the lines whose first token is one of the runs are removed,
  after the file was copied once to ``<file>.bak-<run_key[:12]>-<yymmddHHMMSS>`` next to it;
  the rest of the file is kept byte for byte, in order (a temp file, then ``mv``);
- the run's per-run files are moved into an ``excluded/`` directory beside them (never
  overwriting: an existing ``excluded/<name>`` is a conflict, reported, the file left alone):
  the calibConst IST file, which the InjSigTime part of step 8 would submit, and the files
  that would put the run back into the cumulative files on a later date — its ETS_cut shield
  files (``add_shield.sh`` appends every ``shield*.txt``), its search_peak
  ``shield_run{run}.txt`` (``add.sh``) and its ``hist/hist{run}.root`` (the genJob.sh of steps
  3–6 process every hist file in ``hist/``);
- one line per call that changed something is appended to ``INJ/set_aside.log``.

Everything happens in ONE remote command. A second call finds nothing to remove or move and
says so. Not handled: a writer appending to a cumulative file during the few milliseconds of
the rewrite (the legacy scripts take no lock either), and constants an earlier step-8 dry run
already moved into the AFS directories (step 8's range check is the guard there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn

from steps.declare import declare
from steps.remote import validate
from steps.remote.site import RemoteSite
from steps.remote.validate import InvalidValue, q, qpath
from steps.results import StepResult
from steps.step_log import fail, step_logger

STEP = "8.exclude"
INVALID_PARAMETER_CODE = 20  # INVALID_PARAMETER (manual): bad runs / round / tag
WRITE_FAILED_CODE = 12  # FILE_WRITE_FAILED (retry): a rewrite or move failed; rerun is safe
CONFLICT_CODE = 72  # DATA_INCONSISTENT (manual): excluded/<name> already exists
MIN_RUN = 10000  # runs have 5 or more digits (steps-7-8.md §2.2)
MAX_RUN = 999_999_999  # validate.RUN_RE: at most 9 digits
REASON_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EXCLUDED = "excluded"
LOG_NAME = "set_aside.log"


@dataclass(frozen=True)
class Move:
    """A per-run file and where it goes (``<dir>/excluded/<name>``)."""

    run: int
    directory: str
    name: str
    kind: str  # "ist_constant", "ets_shield", "search_peak_shield", "hist"

    @property
    def source(self) -> str:
        return f"{self.directory}/{self.name}"

    @property
    def target(self) -> str:
        return f"{self.directory}/{EXCLUDED}/{self.name}"


def _refuse(message: str, **fields: Any) -> NoReturn:
    fail(STEP, INVALID_PARAMETER_CODE, message, **fields)


def validate_runs(runs: object) -> list[int]:
    """Sorted unique run numbers: ints (not bools) of 5 to 9 digits, at least one."""
    if not isinstance(runs, list | tuple) or not runs:
        _refuse(f"runs must be a non-empty list of run numbers, got {runs!r}")
    out = set()
    for r in runs:
        if isinstance(r, bool) or not isinstance(r, int) or not MIN_RUN <= r <= MAX_RUN:
            _refuse(f"invalid run {r!r}: a run number has 5 to 9 digits")
        out.add(r)
    return sorted(out)


def shield_names(site: RemoteSite, run: int) -> list[str]:
    """ETS_cut shield file names of a run: the site's pattern and both documented names."""
    names = [site.settings.shield_file(run), f"shield{run}.txt", f"shield_run{run}.txt"]
    return [validate.file_name(n) for n in dict.fromkeys(names)]


def cumulative_files(site: RemoteSite, round: str) -> list[str]:
    """The round's cumulative run tables, in the order they are filled."""
    p = site.paths(round)
    return [f"{p.inj}/interval.txt", f"{p.search_peak}/window.dat", f"{p.ets_cut}/ets_cut.txt"]


def moves(site: RemoteSite, round: str, runs: list[int]) -> list[Move]:
    """Every per-run file to set aside, per run in a fixed order."""
    p = site.paths(round)
    bosse = site.settings.bosse
    out: list[Move] = []
    for r in runs:
        out.append(Move(r, p.calib_const, f"InjSigTime_00{r}_{bosse}.root", "ist_constant"))
        out += [Move(r, p.ets_cut, n, "ets_shield") for n in shield_names(site, r)]
        out.append(Move(r, p.search_peak, f"shield_run{r}.txt", "search_peak_shield"))
        out.append(Move(r, p.hist, f"hist{r:05d}.root", "hist"))
    return out


# Removes the lines whose first token is one of RUNS (leading zeros ignored) from file $1
# (index $2); the removed lines are printed only once the file was replaced.
_FILTER = r"""
filter() {
  f=$1; i=$2
  if [ ! -f "$f" ]; then echo "::nofile:: $i"; return 0; fi
  keep="$f.setaside.$$"; gone="$f.setaside-gone.$$"
  if ! : > "$keep" || ! : > "$gone"; then
    rm -f -- "$keep" "$gone"; echo "::error:: $i cannot write next to the file"; rc=4; return 0
  fi
  if ! awk -v RUNS="$runs" -v KEEP="$keep" -v GONE="$gone" '
      BEGIN { n = split(RUNS, a, " "); for (k = 1; k <= n; k++) r[a[k]] = 1 }
      { t = $1; if (t ~ /^[0-9]+$/) { sub(/^0+/, "", t); if (t in r) { print > GONE; next } }
        print > KEEP }' "$f"; then
    rm -f -- "$keep" "$gone"; echo "::error:: $i reading the file failed"; rc=4; return 0
  fi
  if [ ! -s "$gone" ]; then rm -f -- "$keep" "$gone"; echo "::clean:: $i"; return 0; fi
  b="$f.bak-$tag-$ts"; k=1
  while [ -e "$b" ]; do k=$((k+1)); b="$f.bak-$tag-$ts-$k"; done
  if ! cp -p -- "$f" "$b"; then
    rm -f -- "$keep" "$gone"; echo "::error:: $i backup failed"; rc=4; return 0
  fi
  chmod --reference="$f" "$keep" 2>/dev/null
  if ! mv -f -- "$keep" "$f"; then
    rm -f -- "$keep" "$gone"; echo "::error:: $i replacing the file failed"; rc=4; return 0
  fi
  changed=1
  echo "::backup:: $i $b"
  while IFS= read -r line || [ -n "$line" ]; do printf '::line:: %s %s\n' "$i" "$line"; done \
    < "$gone"
  rm -f -- "$gone"
}
move() {
  s=$1; d=$2; x=$3; i=$4
  if [ -e "$s" ] || [ -L "$s" ]; then
    if [ -e "$d" ] || [ -L "$d" ]; then echo "::conflict:: $i"
    elif mkdir -p -- "$x" && mv -n -- "$s" "$d" && [ ! -e "$s" ] && [ -e "$d" ]; then
      echo "::moved:: $i"; changed=1
    else echo "::error:: $i move failed"; rc=4
    fi
  elif [ -e "$d" ]; then echo "::already:: $i"
  else echo "::absent:: $i"
  fi
}
"""


def set_aside_script(
    site: RemoteSite, round: str, runs: list[int], run_key: str, reason_tag: str
) -> tuple[str, list[str], list[Move]]:
    """The one remote command, the cumulative files and the moves it refers to by index."""
    files = cumulative_files(site, round)
    todo = moves(site, round, runs)
    log_path = f"{site.paths(round).inj}/{LOG_NAME}"
    words = " ".join(str(r) for r in runs)
    lines = [
        "rc=0; changed=0",
        f"runs={q(words)}; tag={q(run_key[:12])}",
        "ts=$(date +%y%m%d%H%M%S)",
        _FILTER,
    ]
    lines += [f"filter {qpath(f)} {i}" for i, f in enumerate(files)]
    lines += [
        f"move {qpath(m.source)} {qpath(m.target)} {qpath(m.directory + '/' + EXCLUDED)} {i}"
        for i, m in enumerate(todo)
    ]
    record = f"{run_key} {reason_tag} runs: {words}"
    lines.append(
        'if [ "$changed" = 1 ]; then '
        f"printf '%s %s\\n' \"$ts\" {q(record)} >> {qpath(log_path)} "
        '|| echo "::error:: log"; fi'
    )
    lines.append('echo "::ts:: $ts"; exit $rc')
    return "\n".join(lines), files, todo


def set_aside_runs(
    site: RemoteSite, *, round: str, runs: list[int], run_key: str, reason_tag: str
) -> StepResult:
    """Remove ``runs`` from the round's cumulative files and move their per-run files aside.

    Idempotent; every input is validated before any remote command (code 20). Returns what
    was done: ``data["files"]`` (per cumulative file: removed lines, backup), ``data["moved"]``,
    ``data["already_set_aside"]``, ``data["not_found"]``, ``data["changed"]``. A failed write
    raises 12 (retry: safe to rerun), a name already taken in ``excluded/`` raises 72 (manual)
    after everything else was done; both carry the same data.
    """
    try:
        validate.round_(round)
        validate.job_key(run_key)
    except InvalidValue as exc:
        _refuse(str(exc))
    if not isinstance(reason_tag, str) or not REASON_RE.match(reason_tag):
        _refuse(f"invalid reason_tag {reason_tag!r}: letters, digits, _.:- (at most 64)")
    run_list = validate_runs(runs)
    script, files, todo = set_aside_script(site, round, run_list, run_key, reason_tag)
    res = site.run(script)
    return _report(round, run_list, run_key, reason_tag, files, todo, res.stdout, res.exit_code)


def _report(
    round: str,
    runs: list[int],
    run_key: str,
    reason_tag: str,
    files: list[str],
    todo: list[Move],
    stdout: str,
    exit_code: int,
) -> StepResult:
    per_file: dict[str, dict[str, Any]] = {
        f: {"found": True, "removed": [], "backup": None} for f in files
    }
    moved: list[dict[str, Any]] = []
    already: list[dict[str, Any]] = []
    absent: list[str] = []
    conflicts: list[dict[str, Any]] = []
    problems: list[str] = []
    stamp = None
    for line in stdout.split("\n"):
        tag, _, rest = line.partition(" ")
        if tag == "::line::":
            idx, _, text = rest.partition(" ")
            per_file[files[int(idx)]]["removed"].append(text)
        elif tag == "::backup::":
            idx, _, path = rest.partition(" ")
            per_file[files[int(idx)]]["backup"] = path
        elif tag == "::nofile::":
            per_file[files[int(rest)]]["found"] = False
        elif tag in ("::moved::", "::already::", "::conflict::", "::absent::"):
            m = todo[int(rest)]
            entry = {"run": m.run, "kind": m.kind, "from": m.source, "to": m.target}
            {"::moved::": moved, "::already::": already, "::conflict::": conflicts}.get(
                tag, []
            ).append(entry)
            if tag == "::absent::":
                absent.append(m.source)
        elif tag == "::error::":
            idx, _, why = rest.partition(" ")
            if idx.isdigit() and why.startswith("move"):
                problems.append(f"{todo[int(idx)].source}: {why}")
            elif idx.isdigit():
                problems.append(f"{files[int(idx)]}: {why}")
            else:
                problems.append(f"{LOG_NAME}: appending the record failed")
        elif tag == "::ts::":
            stamp = rest.strip()
    removed_total = sum(len(v["removed"]) for v in per_file.values())
    runs_with_lines = sorted(
        {
            int(text.split()[0])
            for v in per_file.values()
            for text in v["removed"]
            if text.split() and text.split()[0].isdigit()
        }
    )
    data: dict[str, Any] = {
        "runs": runs,
        "run_key": run_key,
        "reason_tag": reason_tag,
        "timestamp": stamp,
        "files": per_file,
        "lines_removed": removed_total,
        "moved": moved,
        "already_set_aside": already,
        "not_found": [f for f, v in per_file.items() if not v["found"]] + absent,
        "runs_without_lines": [r for r in runs if r not in runs_with_lines],
        "conflicts": conflicts,
        "changed": bool(removed_total or moved),
    }
    base: dict[str, Any] = {"round": round, "data": data}
    if problems or (exit_code != 0 and not conflicts):
        detail = "; ".join(problems) or f"exit {exit_code}"
        fail(STEP, WRITE_FAILED_CODE, f"setting aside runs {runs} failed: {detail}", **base)
    if conflicts:
        names = ", ".join(c["to"] for c in conflicts)
        fail(
            STEP,
            CONFLICT_CODE,
            f"not moved, the name is already taken in excluded/: {names}",
            **base,
        )
    if data["changed"]:
        counts = ", ".join(
            f"{len(v['removed'])} from {f.rsplit('/', 1)[-1]}" for f, v in per_file.items()
        )
        message = (
            f"runs {runs} set aside: {removed_total} lines removed ({counts}), "
            f"{len(moved)} files moved to excluded/"
        )
    else:
        message = f"nothing to change: runs {runs} have no lines and no files left to set aside"
    step_logger().info("%s", message)
    return StepResult(step=STEP, message=message, round=round, data=data)


# --------------------------------------------------------------------------- tasks

step8_set_aside = declare(
    "step8_set_aside",
    "8",
    "Set aside the runs of a failed date before the database submission",
    set_aside_runs,
    site_after="reason_tag",
)
