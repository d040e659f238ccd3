"""Appending to the cumulative files (``window.dat``, ``ets_cut.txt``) without duplicates.

Why: the add scripts (``cat shield* >> file``) append whatever is there; re-running a step
must not append this date's lines twice (spec steps.md rule 6). Steps 3.2 and 5.2 read this
date's lines and the target in one command, skip the script when every line is already
there, and after it keep only the first copy of each of this date's lines.
"""

from __future__ import annotations

import re

from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath

BARE_RUN_RE = re.compile(r"^[0-9]+$")


def read_lines(
    site: RemoteSite, directory: str, names: list[str], target: str
) -> tuple[dict[str, list[str] | None], list[str] | None]:
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
    return per_file, target_lines


def window_lines(per_file: dict[str, list[str] | None]) -> list[str]:
    """Lines that carry windows (not only a run number, not blank), in file order."""
    return [
        ln
        for lines in per_file.values()
        for ln in (lines or [])
        if ln.strip() and not BARE_RUN_RE.match(ln)
    ]


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
