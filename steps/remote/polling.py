"""Batch-output polling: which runs' files exist, are empty, failed — in ONE remote command.

The legacy steps ran one ``ls`` per run per poll cycle. Here a generated bash script
expands every run's names (globs allowed) in the directory, then sizes all matches with
one ``stat`` and searches all failure logs with one ``grep``; Python assembles the report.

Given a jobs file (the cluster ids a step submitted, one per line), the same command first
asks the batch system (``hep_q -u <user>``) for the state of those jobs: files alone cannot
tell a job that ended without output from one still running (a shared filesystem may show
its logs from the start). The batch query runs before the files are looked at, so a job the
batch system reports as gone had written its files before they were sized.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, Field

from steps.remote import validate
from steps.remote.validate import q, qpath

# A batch job failed (read from its error/log files).
FAILURE_REGEX = r"\*\*\* Break \*\*\*|segmentation violation|FATAL|Killed|job aborted"

RunKey = int | str
MAX_FAILURE_LINE = 500
MAX_BATCH_LINES = 5000
# HTCondor job states (hep_q column ST) of a job still in the queue and not held.
ACTIVE_STATES = frozenset({"I", "R", "S", "<", ">"})
HELD_STATE = "H"
CLUSTER_LINE_RE = re.compile(r"^\s*(\d+)\.(\d+)\s+(\S+)\s+(.*)$")
STATE_RE = re.compile(r"(?:^|\s)([IRHCXS<>])\s")


class BatchJob(BaseModel):
    """One line of ``hep_q`` for a job of ours: id ``cluster.proc``, state, the rest."""

    id: str
    state: str
    line: str


class BatchQuery(BaseModel):
    """What the batch system said in one poll (``ok`` False: the query itself failed)."""

    ok: bool
    clusters: list[int] = Field(default_factory=list)  # the ids asked about (jobs file)
    jobs: dict[str, BatchJob] = Field(default_factory=dict)  # ours still in the queue
    error: str = ""


class PollReport(BaseModel):
    """What one poll saw; run keys are exactly the keys the caller passed in ``expected``.

    Names are relative to ``directory`` and may go down into sub-directories
    (``85391/hist85391_*.root``).

    For a glob name, ``present`` holds the total size of its matches and the name is in
    ``empty`` when any match has size 0. ``files`` lists the concrete files per run.
    """

    directory: str
    directory_exists: bool = True
    present: dict[RunKey, dict[str, int]] = Field(default_factory=dict)
    missing: dict[RunKey, list[str]] = Field(default_factory=dict)
    empty: dict[RunKey, list[str]] = Field(default_factory=dict)
    failed: dict[RunKey, str] = Field(default_factory=dict)
    failed_files: dict[RunKey, str] = Field(default_factory=dict)
    anomalies: list[str] = Field(default_factory=list)
    files: dict[RunKey, dict[str, int]] = Field(default_factory=dict)
    complete: list[RunKey] = Field(default_factory=list)
    incomplete: list[RunKey] = Field(default_factory=list)
    # Set when a jobs file was given: the batch system's answer, and (filled by the caller
    # that knows which job file belongs to which run) each run's jobs state:
    # "running" (idle/running in the queue), "held", "ended" (none left in the queue).
    batch: BatchQuery | None = None
    job_states: dict[RunKey, str] = Field(default_factory=dict)


class PollPlan:
    """Validated inputs of one poll and the script that answers it."""

    def __init__(
        self,
        directory: str,
        expected: Mapping[RunKey, Sequence[str]],
        anomalies: Sequence[str] = (),
        failure_logs: Mapping[RunKey, Sequence[str]] | None = None,
        failure_regex: str = FAILURE_REGEX,
        jobs_file: str | None = None,
        batch_query: str = "hep_q",
    ) -> None:
        self.directory = validate.path(directory)
        self.batch = batch_script(jobs_file, batch_query) if jobs_file else ""
        self.runs: list[RunKey] = list(expected)
        seen: set[str] = set()
        for run in self.runs:
            norm = validate.run(run)
            if norm in seen:
                raise validate.InvalidValue("run (duplicate)", run)
            seen.add(norm)
        self.names: list[list[str]] = [
            [relative_name(n) for n in _as_list(expected[r])] for r in self.runs
        ]
        self.anomalies = [relative_name(n) for n in _as_list(anomalies)]
        logs = failure_logs or {}
        by_norm = {validate.run(r): i for i, r in enumerate(self.runs)}
        self.logs: list[list[str]] = [[] for _ in self.runs]
        for run, globs in logs.items():
            idx = by_norm.get(validate.run(run))
            if idx is None:
                raise validate.InvalidValue("run (failure_logs key not in expected)", run)
            self.logs[idx] = [relative_name(n) for n in _as_list(globs)]
        if "\n" in failure_regex or "\x00" in failure_regex or not failure_regex:
            raise validate.InvalidValue("failure regex", failure_regex)
        self.failure_regex = failure_regex

    def script(self) -> str:
        lines = [
            *([self.batch] if self.batch else []),
            "shopt -s nullglob",
            f"cd -- {qpath(self.directory)} 2>/dev/null || {{ printf 'NODIR\\0'; exit 0; }}",
            "declare -A __seen; __F=() __L=()",
            # __m TAG PATTERN-MATCHES...: one record per match, each file sized once.
            '__m() { local t=$1 f; shift; for f in "$@"; do printf \'M\\0%s\\0%s\\0\' "$t" "$f";'
            ' if [ -z "${__seen[$f]}" ]; then __seen[$f]=1; __F+=("$f"); fi; done; }',
            # __l TAG LOG-MATCHES...: log files to grep.
            '__l() { local t=$1 f; shift; for f in "$@"; do printf \'M\\0%s\\0%s\\0\' "$t" "$f";'
            ' __L+=("$f"); done; }',
        ]
        # Name components are validated to [A-Za-z0-9_.*?[]-] (and '/' between them):
        # safe unquoted, and globs expand.
        for i, names in enumerate(self.names):
            for j, name in enumerate(names):
                lines.append(f"__m e{i}.{j} ./{name}")
            for name in self.logs[i]:
                lines.append(f"__l l{i} ./{name}")
        for j, name in enumerate(self.anomalies):
            lines.append(f"__m a{j} ./{name}")
        lines += [
            "printf 'STAT\\0'",
            "((${#__F[@]})) && stat -L --printf '%s\\t%n\\0' -- \"${__F[@]}\" 2>/dev/null",
            "printf 'GREP\\0'",
            f"((${{#__L[@]}})) && grep -a -s -m1 -H -Z -E -e {q(self.failure_regex)}"
            ' -- "${__L[@]}"',
            "exit 0",
        ]
        return "\n".join(lines) + "\n"

    def parse(self, stdout: str) -> PollReport:
        report = PollReport(directory=self.directory)
        if self.batch:
            report.batch, stdout = parse_batch(stdout)
        if stdout.startswith("NODIR\0"):
            report.directory_exists = False
            for i, run in enumerate(self.runs):
                if self.names[i]:
                    report.missing[run] = list(self.names[i])
            report.incomplete = list(self.runs)
            return report
        head, _, rest = stdout.partition("STAT\0")
        stat_part, _, grep_part = rest.partition("GREP\0")
        sizes = _parse_stat(stat_part)
        matches: dict[str, list[str]] = {}
        tokens = head.split("\0")
        for k in range(0, len(tokens) - 2, 3):
            if tokens[k] == "M":
                matches.setdefault(tokens[k + 1], []).append(tokens[k + 2])
        first_fail = _parse_grep(grep_part)

        for i, run in enumerate(self.runs):
            files: dict[str, int] = {}
            for j, name in enumerate(self.names[i]):
                found = [(f, sizes[f]) for f in matches.get(f"e{i}.{j}", []) if f in sizes]
                if not found:
                    report.missing.setdefault(run, []).append(name)
                    continue
                report.present.setdefault(run, {})[name] = sum(size for _, size in found)
                if any(size == 0 for _, size in found):
                    report.empty.setdefault(run, []).append(name)
                files.update((_plain(f), size) for f, size in found)
            if files:
                report.files[run] = files
            for log in matches.get(f"l{i}", []):
                if log in first_fail:
                    report.failed[run] = first_fail[log][:MAX_FAILURE_LINE]
                    report.failed_files[run] = _plain(log)
                    break
            ok = run not in report.missing and run not in report.empty
            (report.complete if ok and run not in report.failed else report.incomplete).append(run)
        for j, name in enumerate(self.anomalies):
            if any(f in sizes for f in matches.get(f"a{j}", [])):
                report.anomalies.append(name)
        return report


def batch_script(jobs_file: str, batch_query: str = "hep_q") -> str:
    """Bash printing ``BATCH\\0<ids>\\0<rc>\\0<our hep_q lines>\\0`` for the poll scripts.

    ``jobs_file`` holds cluster ids, one per line (``steps.batch_jobs.record_detached_jobs``); no file
    or no id prints rc ``-`` (nothing to ask). ``batch_query`` is the command (``hep_q``),
    called as ``<cmd> -u <login user>``; only the lines of our clusters are kept.
    """
    jf = qpath(validate.path(jobs_file))
    cmd = command_word(batch_query)
    return (
        f"__ids=$(grep -oE '^[0-9]+' -- {jf} 2>/dev/null | sort -un | tr '\\n' ' ')\n"
        "printf 'BATCH\\0%s\\0' \"$__ids\"\n"
        "if [ -z \"${__ids// /}\" ]; then printf -- '-\\0\\0'; else\n"
        f'__q=$({cmd} -u "$(id -un)" 2>&1); __rc=$?\n'
        "printf '%s\\0' \"$__rc\"\n"
        'if [ "$__rc" = 0 ]; then __re="^[[:space:]]*(${__ids% }"; __re="${__re// /|})\\."\n'
        f'  printf \'%s\\n\' "$__q" | grep -E -- "$__re" | head -n {MAX_BATCH_LINES}\n'
        "else printf '%s' \"${__q:0:300}\"; fi\n"
        "printf '\\0'; fi"
    )


def command_word(value: object) -> str:
    """A command as one quoted word: a bare name on the PATH (``hep_q``) or a path."""
    if isinstance(value, str) and "/" not in value:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", value) or value in {".", ".."}:
            raise validate.InvalidValue("command", value)
        return q(value)
    return qpath(validate.path(value))


def parse_batch(stdout: str) -> tuple[BatchQuery | None, str]:
    """Split the batch part off a poll's stdout: (answer or None, rest of stdout)."""
    if not stdout.startswith("BATCH\0"):
        return None, stdout
    parts = stdout.split("\0", 4)
    if len(parts) < 5:
        return BatchQuery(ok=False, error="truncated batch answer"), ""
    _, ids, rc, body, rest = parts
    clusters = sorted({int(x) for x in ids.split() if x.isdigit()})
    if rc == "-":
        return None, rest
    if rc != "0":
        return BatchQuery(ok=False, clusters=clusters, error=f"exit {rc}: {body.strip()}"), rest
    jobs: dict[str, BatchJob] = {}
    for line in body.splitlines():
        m = CLUSTER_LINE_RE.match(line)
        if not m or int(m.group(1)) not in clusters:
            continue
        st = STATE_RE.search(" " + m.group(4) + " ")
        job_id = f"{m.group(1)}.{m.group(2)}"
        jobs[job_id] = BatchJob(id=job_id, state=st.group(1) if st else "?", line=line.strip())
    return BatchQuery(ok=True, clusters=clusters, jobs=jobs), rest


def relative_name(value: object) -> str:
    """A name below the polled directory: ``hist1.root``, ``85391/hist85391_*.root``.

    Every component must be a valid file name (globs allowed, never ``.`` or ``..``).
    """
    if not isinstance(value, str) or not value:
        raise validate.InvalidValue("file name", value)
    for part in value.split("/"):
        try:
            validate.file_name(part)
        except validate.InvalidValue:
            raise validate.InvalidValue("file name", value) from None
    return value


def _as_list(value: Sequence[str] | str) -> list[str]:
    """A lone string is one name, not a sequence of one-letter names."""
    return [value] if isinstance(value, str) else list(value)


def _plain(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def _parse_stat(text: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for rec in text.split("\0"):
        size, sep, name = rec.partition("\t")
        if sep and size.isdigit():
            sizes[name] = int(size)
    return sizes


def _parse_grep(text: str) -> dict[str, str]:
    """``file\\0line\\n`` records (grep -H -Z -m1) → first matching line per file."""
    found: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        nul = text.find("\0", pos)
        if nul < 0:
            break
        end = text.find("\n", nul + 1)
        if end < 0:
            end = len(text)
        name = text[pos:nul]
        found.setdefault(name, text[nul + 1 : end].rstrip("\r"))
        pos = end + 1
    return found
