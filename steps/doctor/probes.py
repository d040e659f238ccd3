"""The doctor's remote scripts (each ONE command, values quoted) and their parsers.

Every script only reads, except ``scratch_script`` which creates the one scratch directory
the doctor later removes with ``remove_scratch_script``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from steps.doctor.targets import Target
from steps.remote.validate import q, qpath

TOOLS = ("hadd", "root", "hep_sub", "hep_q", "hep_rm", "boss.condor")
SCRATCH_RE = re.compile(r"^(/|~/)[A-Za-z0-9_./-]*/doctor-[A-Za-z0-9]{6,}$")


# ------------------------------------------------------------------------- paths
@dataclass(frozen=True)
class PathFacts:
    kind: str  # dir, file, other, missing
    mode: str  # ls -l style, "-" when missing
    owner: str
    access: str  # the subset of "rwx" the login user has


def paths_script(targets: Sequence[Target]) -> str:
    lines = [
        "__p() {",
        '  local p=$1 t=missing m=- o=- a=""',
        '  if [ -d "$p" ]; then t=dir; elif [ -f "$p" ]; then t=file; '
        'elif [ -e "$p" ]; then t=other; fi',
        '  if [ $t != missing ]; then m=$(stat -L -c %A -- "$p" 2>/dev/null); '
        'o=$(stat -L -c %U -- "$p" 2>/dev/null); fi',
        '  [ -r "$p" ] && a+=r; [ -w "$p" ] && a+=w; [ -x "$p" ] && a+=x',
        '  printf \'%s\\t%s\\t%s\\t%s\\t%s\\n\' "$2" "$t" "$m" "$o" "${a:--}"',
        "}",
    ]
    lines += [f"__p {qpath(t.path)} {i}" for i, t in enumerate(targets)]
    return "\n".join(lines) + "\n"


def parse_paths(stdout: str, count: int) -> dict[int, PathFacts]:
    out: dict[int, PathFacts] = {}
    for line in stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or not parts[0].isdigit() or int(parts[0]) >= count:
            continue
        access = "" if parts[4] == "-" else parts[4]
        out[int(parts[0])] = PathFacts(parts[1], parts[2] or "-", parts[3] or "-", access)
    return out


# --------------------------------------------------------------------- env, tools
@dataclass
class ToolFacts:
    env_rc: int | None = None
    env_stdout: str = ""
    env_round: str = ""
    plain: dict[str, str] | None = None  # tool -> path on the PATH of a plain exec ("" absent)
    with_env: dict[str, str] | None = None  # tool -> path after sourcing the env script
    hep_q_rc: int | None = None
    hep_q_err: str = ""


def tools_script(env_script: str) -> str:
    """Source the env script as the steps' detached jobs do (bash, non-login), then look up
    each tool; also a plain lookup, as the legacy automation ran ``./mergeHist.sh``."""
    env = qpath(env_script)
    lines = [
        f"__o=$(source {env} 2>/dev/null; __rc=$?; "
        'printf \'\\n__END__%s %s\' "$__rc" "${ROUND_NUMBER:-}")',
        'printf \'ENVOUT\\t%s\\n\' "$(printf %s "$__o" | base64 -w0)"',
    ]
    for tool in TOOLS:
        lines.append(f"printf 'PLAIN\\t%s\\t%s\\n' {q(tool)} \"$(command -v {q(tool)})\"")
        lines.append(
            f"printf 'ENV\\t%s\\t%s\\n' {q(tool)} "
            f'"$(source {env} >/dev/null 2>&1; command -v {q(tool)})"'
        )
    lines.append(
        f'__e=$(source {env} >/dev/null 2>&1 && timeout 60 hep_q -u "$(id -un)" 2>&1 '
        ">/dev/null); __rc=$?; printf 'HEPQ\\t%s\\t%s\\n' \"$__rc\" "
        '"$(printf %s "$__e" | head -c 300 | tr "\\n\\t" "  ")"'
    )
    return "\n".join(lines) + "\n"


def parse_tools(stdout: str) -> ToolFacts:
    import base64

    facts = ToolFacts(plain={}, with_env={})
    for line in stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "ENVOUT" and len(parts) == 2:
            text = base64.b64decode(parts[1] or "").decode("utf-8", "replace")
            body, _, tail = text.rpartition("\n__END__")
            rc, _, rnd = tail.partition(" ")
            facts.env_rc = int(rc) if rc.isdigit() else None
            facts.env_stdout, facts.env_round = body, rnd.strip()
        elif parts[0] in ("PLAIN", "ENV") and len(parts) == 3:
            target = facts.plain if parts[0] == "PLAIN" else facts.with_env
            assert target is not None
            target[parts[1]] = parts[2]
        elif parts[0] == "HEPQ" and len(parts) == 3:
            facts.hep_q_rc = int(parts[1]) if parts[1].isdigit() else None
            facts.hep_q_err = parts[2].strip()
    return facts


# ---------------------------------------------------------------- file systems
def fs_script(paths: Sequence[str]) -> str:
    """File-system type and free space of each path (its nearest existing parent), the
    AFS/Kerberos tools, their token lists, user quota, and the remote clock."""
    lines = [
        "__fs() {",
        "  local p=$1",
        '  while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname -- "$p"); done',
        "  local t a",
        '  t=$(stat -f -L -c %T -- "$p" 2>/dev/null || echo unknown)',
        "  a=$(df -P -k -- \"$p\" 2>/dev/null | awk 'NR==2 {print $4}')",
        '  printf \'FS\\t%s\\t%s\\t%s\\t%s\\n\' "$2" "$t" "${a:--}" "$p"',
        "}",
    ]
    lines += [f"__fs {qpath(p)} {i}" for i, p in enumerate(paths)]
    lines += [
        "for __t in tokens klist fs quota; do",
        '  printf \'HAS\\t%s\\t%s\\n\' "$__t" "$(command -v "$__t")"',
        "done",
        "if command -v tokens >/dev/null; then timeout 20 tokens 2>&1 | head -30 | "
        "sed 's/^/TOK\\t/'; fi",
        "if command -v klist >/dev/null; then timeout 20 klist 2>&1 | head -30 | "
        "sed 's/^/KRB\\t/'; fi",
        "if command -v quota >/dev/null; then timeout 20 quota -s 2>&1 | head -20 | "
        "sed 's/^/QUO\\t/'; fi",
        "printf 'NOW\\t%s\\n' \"$(date +%s.%N)\"",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class FsFacts:
    fs: dict[int, tuple[str, int | None, str]]  # index -> (type, free KiB, existing path)
    has: dict[str, str]
    tokens: list[str]
    klist: list[str]
    quota: list[str]
    now: float | None


def parse_fs(stdout: str) -> FsFacts:
    facts = FsFacts({}, {}, [], [], [], None)
    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if tag == "FS" and len(parts) == 4 and parts[0].isdigit():
            free = int(parts[2]) if parts[2].isdigit() else None
            facts.fs[int(parts[0])] = (parts[1], free, parts[3])
        elif tag == "HAS" and len(parts) == 2:
            facts.has[parts[0]] = parts[1]
        elif tag == "TOK":
            facts.tokens.append(rest)
        elif tag == "KRB":
            facts.klist.append(rest)
        elif tag == "QUO":
            facts.quota.append(rest)
        elif tag == "NOW":
            try:
                facts.now = float(rest.strip())
            except ValueError:
                facts.now = None
    return facts


_TOKEN_EXPIRES = re.compile(r"\[Expires\s+([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{1,2}):(\d{2})\]")
_KLIST_LINE = re.compile(
    r"^\s*(\d{2}/\d{2}/\d{2,4})\s+(\d{2}:\d{2}:\d{2})\s+(\d{2}/\d{2}/\d{2,4})\s+(\d{2}:\d{2}:\d{2})"
    r"\s+krbtgt/"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def afs_token_expiry(lines: Sequence[str], now: datetime) -> list[datetime]:
    """Expiry times of the AFS tokens ``tokens`` lists (``[Expires Dec  7 10:00]``)."""
    out = []
    for line in lines:
        m = _TOKEN_EXPIRES.search(line)
        if not m or m.group(1) not in _MONTHS:
            continue
        month = _MONTHS.index(m.group(1)) + 1
        when = datetime(now.year, month, int(m.group(2)), int(m.group(3)), int(m.group(4)))
        if (when - now).days < -180:  # "Jan 2" seen in late December
            when = when.replace(year=now.year + 1)
        out.append(when)
    return out


def krb_ticket_expiry(lines: Sequence[str]) -> list[datetime]:
    """Expiry of the ticket-granting ticket(s) ``klist`` (MIT) lists."""
    out = []
    for line in lines:
        m = _KLIST_LINE.match(line)
        if not m:
            continue
        day = m.group(3)
        fmt = "%m/%d/%y" if len(day.rsplit("/", 1)[1]) == 2 else "%m/%d/%Y"
        try:
            out.append(datetime.strptime(f"{day} {m.group(4)}", f"{fmt} %H:%M:%S"))
        except ValueError:
            continue
    return out


# --------------------------------------------------------------------- scratch
def scratch_script(control_dir: str) -> str:
    """Create the scratch directory in the control directory, write, read back; print its
    path, the file's mtime and the remote clock (file-server skew)."""
    ctl = qpath(control_dir)
    return (
        f"mkdir -p -- {ctl} || exit 90\n"
        f"__d=$(mktemp -d -- {ctl}/doctor-XXXXXXXX) || exit 91\n"
        "printf 'SCRATCH\\t%s\\n' \"$__d\"\n"
        'echo probe > "$__d/probe" || exit 92\n'
        '[ "$(cat -- "$__d/probe")" = probe ] || exit 93\n'
        'printf \'MTIME\\t%s\\t%s\\n\' "$(stat -c %Y -- "$__d/probe")" "$(date +%s)"\n'
    )


def remove_scratch_script(scratch: str) -> str:
    if not SCRATCH_RE.match(scratch):
        raise ValueError(f"not a doctor scratch directory: {scratch!r}")
    return f"rm -rf -- {qpath(scratch)}"
