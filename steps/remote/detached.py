"""Detached remote commands: scripts that survive a dropped SSH session, and their status.

A command that can outlive a session (job generation, scripts that run for minutes) is
started under ``setsid nohup`` with a control directory ``<control_dir>/<key>/`` holding
``cmd``, ``cwd``, ``pid`` (the leader: its pid is the session and process group id),
``stdout``, ``stderr`` and, once it ended, ``rc``. The directory is created with ``mkdir`` (no ``-p`` on the leaf), so a second start
with the same key finds it and re-attaches instead of starting the command again.

This module only builds the bash scripts and parses their output; ``RemoteSite`` runs them.
Every script is ONE remote command. Values are validated and quoted here.
"""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel

from steps.remote import validate
from steps.remote.validate import q, qpath

State = Literal["running", "exited", "missing"]

# A control dir without a pid is "starting" for this long, then the start is deemed lost.
START_GRACE_SECONDS = 30
DEFAULT_TAIL_BYTES = 1024 * 1024
RUNNING_TAIL_BYTES = 16 * 1024


class Detached(BaseModel):
    """Status of one detached command.

    ``state`` is ``exited`` with ``exit_code`` None when the process vanished without
    writing ``rc`` (killed with SIGKILL, machine rebooted): the result is *lost*.
    ``started`` is True only in the answer of the ``start_detached`` call that launched it.
    """

    key: str
    state: State
    pid: int | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    started: bool = False

    @property
    def lost(self) -> bool:
        return self.state == "exited" and self.exit_code is None

    @property
    def ok(self) -> bool:
        return self.state == "exited" and self.exit_code == 0


# The detached process itself. It reads its inputs from the environment (so nothing is
# re-parsed), runs the command in a subshell (an ``exit`` in the command still lets us
# write ``rc``), and traps TERM so that kill_detached leaves rc=143 behind.
_INNER = r"""trap : TERM INT
(
  __c=$TOPUP_DETACHED_CMD __d=$TOPUP_DETACHED_CWD __e=$TOPUP_DETACHED_ENV
  unset TOPUP_DETACHED_CMD TOPUP_DETACHED_CWD TOPUP_DETACHED_ENV TOPUP_DETACHED_CTL
  if [ -n "$__e" ]; then source "$__e" || exit $?; fi
  cd -- "$__d" || exit $?
  eval "$__c"
)
__rc=$?
printf '%s\n' "$__rc" > "$TOPUP_DETACHED_CTL/rc.tmp" && mv -f -- "$TOPUP_DETACHED_CTL/rc.tmp" "$TOPUP_DETACHED_CTL/rc"
"""

# ``__alive PID``: true while a process of session PID (our detached leader) is not a zombie.
# A session, not only the process group: a command may move children to another group
# (``timeout`` does). Zombies do not count: an init that reaps slowly must not make a
# finished command look alive.
# ``__state KEY`` sets __s (running/exited/missing), __pid and __rc for "$ctl/KEY";
# ``__st KEY RUNNING_TAIL ENDED_TAIL`` prints it as one NUL-separated tagged record
# (tails are base64, so any bytes survive).
_STATUS_FN = r"""__alive() {
  local st
  st=$(ps -o stat= -s "$1" 2>/dev/null) || return 1
  [[ $st =~ (^|$'\n')[[:space:]]*[^Z[:space:]] ]]
}
__state() {
  local d="$ctl/$1" alive=0 now mt
  __pid= __rc=
  if [ ! -d "$d" ]; then __s=missing; return 0; fi
  [ -f "$d/pid" ] && read -r __pid < "$d/pid"
  [[ $__pid =~ ^[1-9][0-9]*$ ]] || __pid=
  if [ -n "$__pid" ] && [ "$__pid" -gt 1 ] && __alive "$__pid"; then alive=1; fi
  [ -f "$d/rc" ] && read -r __rc < "$d/rc"
  [[ $__rc =~ ^[0-9]+$ ]] || __rc=
  if [ -n "$__rc" ]; then __s=exited
  elif [ $alive = 1 ]; then __s=running
  elif [ -z "$__pid" ]; then
    printf -v now '%(%s)T' -1; mt=$(stat -c %Y -- "$d" 2>/dev/null || echo 0)
    if [ $((now - mt)) -lt __GRACE__ ]; then __s=running; else __s=exited; fi
  else __s=exited; fi
}
__st() {
  local d="$ctl/$1" n=$2
  __state "$1"
  [ $__s = exited ] && n=$3
  printf 'K\0%s\0S\0%s\0P\0%s\0R\0%s\0' "$1" "$__s" "$__pid" "$__rc"
  if [ $__s != missing ] && [ "$n" -gt 0 ]; then
    printf 'O\0'; tail -c "$n" -- "$d/stdout" 2>/dev/null | base64 -w0; printf '\0'
    printf 'X\0'; tail -c "$n" -- "$d/stderr" 2>/dev/null | base64 -w0; printf '\0'
  fi
  printf 'E\0'
}
""".replace("__GRACE__", str(START_GRACE_SECONDS))


def _prologue(control_dir: str) -> str:
    return f"ctl={qpath(control_dir)}\n{_STATUS_FN}"


def _tails(running: int, ended: int) -> tuple[int, int]:
    if running < 0 or ended < 0:
        raise ValueError("tail sizes must be >= 0")
    return int(running), int(ended)


def start_script(
    control_dir: str, key: str, command: str, cwd: str, env_script: str | None, tail: int
) -> str:
    """Create the control dir atomically and launch, or report the existing one."""
    key = validate.job_key(key)
    env_value = qpath(env_script) if env_script else "''"
    _, tail = _tails(0, tail)
    return (
        _prologue(control_dir)
        + f"""k={q(key)}; d="$ctl/$k"
mkdir -p -- "$ctl" || exit 90
if mkdir -- "$d" 2>/dev/null; then
  printf '%s\\n' {q(command)} > "$d/cmd"
  printf '%s\\n' {qpath(cwd)} > "$d/cwd"
  TOPUP_DETACHED_CTL="$d" TOPUP_DETACHED_CMD={q(command)} TOPUP_DETACHED_CWD={qpath(cwd)} \\
  TOPUP_DETACHED_ENV={env_value} \\
    setsid nohup bash -c {q(_INNER)} > "$d/stdout" 2> "$d/stderr" < /dev/null &
  printf '%s\\n' "$!" > "$d/pid.tmp" && mv -f -- "$d/pid.tmp" "$d/pid"
  printf 'STARTED\\0'
fi
__st "$k" 0 {tail}
"""
    )


def status_script(control_dir: str, key: str, running_tail: int, ended_tail: int) -> str:
    key = validate.job_key(key)
    running_tail, ended_tail = _tails(running_tail, ended_tail)
    return _prologue(control_dir) + f"__st {q(key)} {running_tail} {ended_tail}\n"


def list_script(control_dir: str, prefix: str, tail: int) -> str:
    """Status of every control dir whose name starts with ``prefix`` (one command)."""
    if prefix:
        validate.job_key(prefix)
    _, tail = _tails(0, tail)
    return (
        _prologue(control_dir)
        + f"""shopt -s nullglob
for __p in "$ctl"/{q(prefix) if prefix else ""}*/; do
  __p=${{__p%/}}; __st "${{__p##*/}}" {tail} {tail}
done
"""
    )


def kill_script(control_dir: str, key: str, grace: float) -> str:
    """TERM the session/group, wait up to ``grace`` s, then KILL; print KILLED if it ran."""
    key = validate.job_key(key)
    steps = max(1, int(grace / 0.1))
    return (
        _prologue(control_dir)
        + f"""k={q(key)}; d="$ctl/$k"; pid=
[ -f "$d/pid" ] && read -r pid < "$d/pid"
if [[ $pid =~ ^[1-9][0-9]*$ ]] && [ "$pid" -gt 1 ] && __alive "$pid"; then
  kill -TERM -- "-$pid" 2>/dev/null; pkill -TERM -s "$pid" 2>/dev/null
  for ((i = 0; i < {steps}; i++)); do __alive "$pid" || break; sleep 0.1; done
  if __alive "$pid"; then
    kill -KILL -- "-$pid" 2>/dev/null; pkill -KILL -s "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do __alive "$pid" || break; sleep 0.1; done
  fi
  printf 'KILLED\\0'
fi
__st "$k" 0 0
"""
    )


def forget_script(control_dir: str, key: str) -> str:
    """Remove a control dir unless its command is still running (exit 3 then)."""
    key = validate.job_key(key)
    return (
        _prologue(control_dir)
        + f"""k={q(key)}
__state "$k"
if [ "$__s" = running ]; then echo "still running" >&2; exit 3; fi
rm -rf -- "$ctl/$k"
"""
    )


def parse(stdout: str) -> tuple[list[Detached], set[str]]:
    """Status records and the bare flags (``STARTED``, ``KILLED``) of a script's output."""
    tokens = stdout.split("\0")
    records: list[Detached] = []
    flags: set[str] = set()
    current: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tag = tokens[i]
        if tag in ("STARTED", "KILLED"):
            flags.add(tag)
            i += 1
            continue
        if tag == "E":
            if current:
                records.append(_record(current))
            current = {}
            i += 1
            continue
        if tag in ("K", "S", "P", "R", "O", "X") and i + 1 < len(tokens):
            current[tag] = tokens[i + 1]
            i += 2
            continue
        i += 1  # trailing empty token or noise from a profile script
    return records, flags


def _record(fields: dict[str, str]) -> Detached:
    state = fields.get("S", "missing")
    if state not in ("running", "exited", "missing"):
        state = "missing"
    pid = fields.get("P") or ""
    rc = fields.get("R") or ""
    return Detached(
        key=fields.get("K", ""),
        state=state,  # type: ignore[arg-type]
        pid=int(pid) if pid.isdigit() else None,
        exit_code=int(rc) if rc.isdigit() else None,
        stdout=_unb64(fields.get("O", "")),
        stderr=_unb64(fields.get("X", "")),
    )


def _unb64(text: str) -> str:
    if not text:
        return ""
    try:
        return base64.b64decode(text.strip()).decode("utf-8", errors="replace")
    except ValueError:
        return ""
