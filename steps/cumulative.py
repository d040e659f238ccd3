"""Appending to the cumulative files (``interval.txt``, ``window.dat``, ``ets_cut.txt``)
without duplicates.

Why: the add scripts (``cat shield* >> file``) append whatever is there; re-running a step
must not append this date's lines twice (spec steps.md rule 6). Steps 3.2 and 5.2 read this
date's lines and the target in one command, skip the script when every line is already
there, and after it keep only the first copy of each of this date's lines. Step 1.3 appends
its ``{run} 15000000`` lines itself, each only when missing.

- ``read_lines(site, directory, names, target) -> DateLines``: this date's files and the
  target in one command; ``DateLines.mine`` (its window lines), ``.all_present`` (the target
  holds them all already), ``.windows()``.
- ``append_with_script(site, step, script, data, *, code, run_key, directory, timeout,
  poll_seconds, **base)``: the add script, once per flow run.
- ``dedupe_command(names, target)``: keep the first copy of each of this date's lines.
- ``append_run_lines(site, path, runs, value) -> RunLines``: ``{run} {value}`` lines appended
  where missing (1.3), one command.
- ``parse_window_lines(lines)``: the windows as numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steps.batch_jobs import exit_failure, submit_once
from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath
from steps.step_log import fail

if TYPE_CHECKING:
    from steps.remote.transport import CommandResult

BARE_RUN_RE = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class DateLines:
    """What ``read_lines`` read: each of this date's files (name → lines; None: missing) and
    the cumulative target's lines (None: no target yet)."""

    per_file: dict[str, list[str] | None]
    target: list[str] | None

    @property
    def mine(self) -> list[str]:
        """This date's window lines, in file order (``window_lines``)."""
        return window_lines(self.per_file)

    @property
    def all_present(self) -> bool:
        """Every one of this date's lines is in the target already: the add script is not
        run again."""
        present = set(self.target or [])
        return bool(self.mine) and all(ln in present for ln in self.mine)

    def windows(self) -> dict[str, list[list[float]]]:
        """``{run: [[lo, hi], ...]}`` of this date's lines (``parse_window_lines``), read where
        the file is read: the physics summary reads these numbers."""
        return {str(r): w for r, w in parse_window_lines(self.mine).items()}


def read_lines(site: RemoteSite, directory: str, names: list[str], target: str) -> DateLines:
    """One command: the lines of each of ``names`` (None: missing) and of ``target``.

    Used by 3.2 and 5.2 to tell whether this date's lines are already in the cumulative file.
    """
    files = " ".join(q(n) for n in names)
    cmd = (
        f"cd {qpath(directory)} || exit 3; for f in {files}; do "
        'if [ -f "$f" ]; then echo "::file:: $f"; cat -- "$f"; echo; '
        'else echo "::missing:: $f"; fi; done; '
        f"if [ -f {q(target)} ]; then echo '::target::'; cat -- {q(target)}; fi; exit 0"
    )
    res = site.run(cmd)
    if res.exit_code == 3:
        raise FileNotFoundError(directory)
    per_file: dict[str, list[str] | None] = dict.fromkeys(names)
    target_lines: list[str] | None = None
    current: list[str] | None = None
    for line in res.stdout.splitlines():
        if line.startswith("::file:: "):
            current = per_file[line[9:]] = []
        elif line.startswith("::missing:: "):
            current = None
        elif line == "::target::":
            current = target_lines = []
        elif current is not None:
            current.append(line)
    return DateLines(per_file, target_lines)


def window_lines(per_file: dict[str, list[str] | None]) -> list[str]:
    """Lines that carry windows (not only a run number, not blank), in file order."""
    return [
        ln
        for lines in per_file.values()
        for ln in (lines or [])
        if ln.strip() and not BARE_RUN_RE.match(ln)
    ]


def append_with_script(
    site: RemoteSite,
    step: str,
    script: str,
    data: dict[str, Any],
    *,
    code: int,
    run_key: str,
    directory: str,
    timeout: float,
    poll_seconds: float,
    **base: Any,
) -> None:
    """Run the stage's add script (``add.sh``, ``add_shield.sh``) in ``directory`` once per
    flow run (``submit_once``, purpose: the script's stem; a retry re-attaches).

    Its key goes into ``data`` (``add_key``, ``add_started``); a non-zero exit fails with
    ``code`` and the tail of its output.
    """
    sub = submit_once(
        site,
        run_key=run_key,
        step=step.replace(".", "_"),
        purpose=script.removesuffix(".sh"),
        command=f"./{script}",
        cwd=directory,
        timeout=timeout,
        env=False,
        poll=max(0.05, min(poll_seconds, 2.0)),
    )
    data.update(add_key=sub.key, add_started=sub.started)
    if sub.detached.exit_code != 0:
        fail(step, code, exit_failure(script, sub.detached), data=data, **base)


def dedupe_command(names: list[str], target: str) -> str:
    """Keep only the first copy of each of this date's window lines in ``target``.

    Why: a partial earlier append plus the add script would duplicate lines; older identical
    lines win, as the checker reads the first match anyway. Runs in the stage directory.
    """
    files = " ".join(q(n) for n in names)
    prog = q(
        'FILENAME != TARGET { if ($0 !~ /^[0-9]+$/ && $0 != "") mine[$0] = 1; next } '
        "!(($0 in mine) && seen[$0]++)"
    )
    tmp = q(f"{target}.dedupe.tmp")
    return (
        f'mine=(); for f in {files}; do [ -f "$f" ] && mine+=("$f"); done; '
        f'if [ ${{#mine[@]}} -gt 0 ]; then awk -v TARGET={q(target)} {prog} "${{mine[@]}}" '
        f"{q(target)} > {tmp} && mv -f -- {tmp} {q(target)} || exit 5; fi"
    )


def parse_window_lines(lines: list[str]) -> dict[int, list[list[float]]]:
    """``{run: [[lo, hi], ...]}`` from window lines (``run lo hi lo hi ...``).

    Why: the summary and trend plots need the numbers the steps read; the first line of a run
    wins, as the checkers read the first matching line. Lines that do not parse are skipped.
    """
    out: dict[int, list[list[float]]] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or int(fields[0]) in out:
            continue
        try:
            values = [float(x) for x in fields[1:]]
        except ValueError:
            continue
        out[int(fields[0])] = [[lo, hi] for lo, hi in zip(values[0::2], values[1::2], strict=False)]
    return out


@dataclass(frozen=True)
class RunLines:
    """What ``append_run_lines`` did: the runs it appended, those already there, the
    file's lines of these runs afterwards, and the command's result (exit code, stderr)."""

    added: list[int]
    present: list[int]
    lines: list[str]
    result: CommandResult


def append_run_lines(site: RemoteSite, path: str, runs: list[int], value: int) -> RunLines:
    """Append ``{run} {value}`` to ``path`` for each run (in order) whose line is missing.

    ONE command: the file is created when missing, a last line without its newline gets one
    first (it would glue our first line onto it), and the lines of these runs are listed
    afterwards. An append that fails stops the command (exit 4).
    """
    qi = qpath(path)
    parts = [
        f"touch -- {qi} || exit 4",
        f'if [ -s {qi} ] && [ -n "$(tail -c1 -- {qi})" ]; then echo >> {qi}; fi',
    ]
    for r in runs:
        line_re = q(f"^[[:space:]]*{r}[[:space:]]+{value}[[:space:]]*$")
        parts.append(
            f"if grep -qE {line_re} -- {qi}; then echo '::have:: {r}'; "
            f"elif echo {q(f'{r} {value}')} >> {qi}; then echo '::added:: {r}'; "
            "else exit 4; fi"
        )
    parts.append("echo '::lines::'")
    any_run = q("^[[:space:]]*(" + "|".join(str(r) for r in runs) + ")[[:space:]]")
    parts.append(f"grep -E {any_run} -- {qi} || true")
    res = site.run("; ".join(parts))
    out = res.stdout
    added = [int(x.split()[1]) for x in out.splitlines() if x.startswith("::added:: ")]
    have = [int(x.split()[1]) for x in out.splitlines() if x.startswith("::have:: ")]
    lines = out.split("::lines::\n", 1)[-1].splitlines() if "::lines::" in out else []
    return RunLines(added, have, lines, res)
