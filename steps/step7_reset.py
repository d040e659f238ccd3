"""Step 7: ``INJ/reset.sh`` — archive this date's working files, guarded and verified.

Remote effect is the legacy one (spec steps-7-8.md §1): ``cd INJ && ./reset.sh`` (no
environment), which snapshots the cumulative files under today's name and moves the per-run
files of steps 1–6 into the ``tmp/`` (and ``raw_shield/``) directories.

Not reproduced (§1.4): running without a human's approval (the flow pauses before this task
unless pre-approved; the task itself refuses an empty ``approved_by``), no pre-check (script
missing or not executable → 7101/7102 manual; a missing archive directory makes the script
rename files or act in the wrong directory → refused, naming the directories), a result that
cannot tell a clean reset from a no-op (we report what was archived and what was left, and
fail if this date's files are still in place), stderr ignored, and a retry running the
script again (it runs detached, once per flow run; a retry re-attaches).
"""

from __future__ import annotations

from typing import Any

from steps.batch_jobs import detached_key, submit_once
from steps.config import SitePaths
from steps.declare import declare
from steps.remote.site import RemoteSite
from steps.remote.validate import file_name, q, qpath
from steps.results import StepResult
from steps.runs_dates import check_inputs, date_runs
from steps.step_log import fail, step_logger

MIN = 60.0
APPROVAL_CODE = 20  # INVALID_PARAMETER (manual): no approver given
MISSING_DIRS_CODE = 70  # DATA_VALIDATION_FAILED (manual): the script would misplace files
LEFT_BEHIND_CODE = 72  # DATA_INCONSISTENT (manual): the script ran, files were not archived


def archive_dirs(p: SitePaths) -> list[str]:
    """Directories ``reset.sh`` moves or copies into; missing ones make it misplace files."""
    return [
        f"{p.inj}/InjSigIntervalCal",
        f"{p.interval_plot}/tmp",
        f"{p.hist}/tmp",
        f"{p.base}/plot/tmp",
        f"{p.search_peak}/tmp",
        f"{p.search_peak}/raw_shield",
        f"{p.search_peak}/time_final",
        f"{p.check_shield}/tmp",
        f"{p.ets_cut}/tmp",
        f"{p.base}/Determining_ETS_cut/ETScutCalibConst",
        f"{p.check_ets_cut}/tmp",
    ]


def source_dirs(p: SitePaths) -> list[str]:
    """Directories ``reset.sh`` ``cd``s into; a missing one shifts its moves elsewhere."""
    return [
        p.interval_plot,
        p.hist,
        f"{p.base}/plot",
        p.search_peak,
        p.check_shield,
        p.ets_cut,
        p.check_ets_cut,
    ]


def date_files(p: SitePaths, runs: list[int]) -> list[tuple[str, str, str | None]]:
    """This date's files reset.sh acts on: (source dir, name, archive dir or None = deleted)."""
    out: list[tuple[str, str, str | None]] = []
    for r in runs:
        out += [
            (p.interval_plot, f"Interval_run{r}.png", f"{p.interval_plot}/tmp"),
            (p.hist, f"hist{r}.root", f"{p.hist}/tmp"),
            (p.hist, f"check{r}.png", None),
            (p.search_peak, f"run_{r}_3.txt", f"{p.search_peak}/tmp"),
            (p.search_peak, f"shield_run{r}.txt", f"{p.search_peak}/raw_shield"),
            (p.check_shield, f"run_{r}_4.txt", f"{p.check_shield}/tmp"),
            (p.ets_cut, f"plot_ETS_{r}.txt", f"{p.ets_cut}/tmp"),
            (p.ets_cut, f"run{r}_cut.png", f"{p.ets_cut}/tmp"),
            (p.ets_cut, f"run{r}_total.png", f"{p.ets_cut}/tmp"),
            (p.check_ets_cut, f"ETScut_check_{r}.txt", f"{p.check_ets_cut}/tmp"),
            (p.check_ets_cut, f"run{r}.png", f"{p.check_ets_cut}/tmp"),
            (p.check_ets_cut, f"run{r}.root", f"{p.check_ets_cut}/tmp"),
        ]
    return out


def _probe_script(p: SitePaths, runs: list[int]) -> str:
    """ONE command: which of this date's files exist in the source and archive dirs, plus
    the script's state, missing directories and today's snapshots (remote clock)."""
    by_dir: dict[str, list[str]] = {}
    for src, name, dst in date_files(p, runs):
        by_dir.setdefault(src, []).append(file_name(name))
        if dst is not None:
            by_dir.setdefault(dst, []).append(file_name(name))
    script = f"{p.inj}/reset.sh"
    parts = [
        f"s={qpath(script)}; if [ ! -e \"$s\" ]; then echo '::script:: missing'; "
        "elif [ ! -x \"$s\" ]; then echo '::script:: noexec'; else echo '::script:: ok'; fi",
        f"for d in {' '.join(qpath(d) for d in [*source_dirs(p), *archive_dirs(p)])}; do "
        '[ -d "$d" ] || echo "::nodir:: $d"; done',
        't=$(date +%y%m%d); echo "::today:: $t"',
    ]
    snaps = [
        f"{p.inj}/InjSigIntervalCal",
        f"{p.search_peak}/time_final",
        f"{p.base}/Determining_ETS_cut/ETScutCalibConst",
    ]
    parts.append(
        f'for d in {" ".join(qpath(d) for d in snaps)}; do [ -e "$d/$t" ] && '
        'echo "::snapshot:: $d/$t"; done; true'
    )
    for d, names in by_dir.items():
        words = " ".join(q(n) for n in dict.fromkeys(names))
        parts.append(
            f"( cd {qpath(d)} 2>/dev/null && for f in {words}; do "
            f'[ -e "$f" ] && echo "::have:: {d}/$f"; done; true )'
        )
    return "\n".join(parts)


def _parse_probe(stdout: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "script": None,
        "nodir": [],
        "today": None,
        "snapshots": [],
        "have": set(),
    }
    for line in stdout.splitlines():
        tag, _, value = line.partition(" ")
        if tag == "::script::":
            out["script"] = value
        elif tag == "::nodir::":
            out["nodir"].append(value)
        elif tag == "::today::":
            out["today"] = value
        elif tag == "::snapshot::":
            out["snapshots"].append(value)
        elif tag == "::have::":
            out["have"].add(value)
    return out


def _probe(site: RemoteSite, p: SitePaths, runs: list[int]) -> dict[str, Any]:
    res = site.run(_probe_script(p, runs))
    return _parse_probe(res.stdout)


def reset_preview(site: RemoteSite, *, date: str, round: str) -> dict[str, Any]:
    """What an approved reset would overwrite, read-only (the probe the step runs first).

    ``snapshots``: today's snapshots of the round's cumulative files (``<dir>/<yymmdd>``,
    named relative to the round's tree, never as server paths) that ``reset.sh`` replaces;
    ``working_files``: how many of this date's files it archives or deletes. The approval
    text shows both, so a person decides before the reset and not after.
    """
    runs = date_runs(site, round, date)
    probe = _probe(site, site.paths(round), runs)
    sources = {f"{src}/{file_name(name)}" for src, name, _ in date_files(site.paths(round), runs)}
    return {
        "today": probe["today"],
        "snapshots": [_relative(s) for s in probe["snapshots"]],
        "working_files": len(sources & probe["have"]),
    }


def _relative(path: str) -> str:
    """``.../InjSigIntervalCal/251206`` -> ``InjSigIntervalCal/251206``."""
    parts = path.rstrip("/").split("/")
    return "/".join(parts[-2:])


def reset(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    approved_by: str = "",
    max_wait_minutes: float = 10,
    poll_seconds: float = 5,
) -> StepResult:
    """Step 7: run ``reset.sh`` once (approved), then report what it archived for this date.

    Data: ``moved`` (this date's files that left their directory during this call),
    ``archived`` (found in the archive dirs afterwards), ``deleted`` (``hist/check*.png``),
    ``left_behind`` (still in place → 72 manual), ``snapshots``, ``stderr_lines``.
    """
    step = "7"
    who = (approved_by or "").strip()
    if not who:
        fail(
            step,
            APPROVAL_CODE,
            "reset.sh archives the working files of every step: it needs an operator's "
            "approval (approved_by is empty)",
            date=date if isinstance(date, str) else None,
            round=round if isinstance(round, str) else None,
        )
    runs = check_inputs(step, site, round, date, run_key)
    p = site.paths(round)
    base: dict[str, Any] = {"date": date, "round": round}
    data: dict[str, Any] = {"approved_by": who}
    log = step_logger()
    key = detached_key(run_key, "7", "reset")
    earlier = [d for d in site.list_detached(key) if d.state != "missing"]
    before: dict[str, Any] | None = None
    if not any(d.ok or d.state == "running" for d in earlier):
        before = _probe(site, p, runs)
        script = before["script"]
        if script == "missing":
            fail(step, 7101, f"{p.inj}/reset.sh does not exist", data=data, **base)
        if script == "noexec":
            fail(step, 7102, f"{p.inj}/reset.sh is not executable (chmod +x)", data=data, **base)
        if before["nodir"]:
            fail(
                step,
                MISSING_DIRS_CODE,
                "reset.sh would misplace files: missing directories " + ", ".join(before["nodir"]),
                data={**data, "missing_dirs": before["nodir"]},
                **base,
            )
        if before["snapshots"]:
            log.warning(  # names relative to the round's tree: no server paths in logs
                "reset.sh ran already today: it will overwrite %s",
                ", ".join(_relative(s) for s in before["snapshots"]),
            )
            data["snapshots_overwritten"] = before["snapshots"]
    sub = submit_once(
        site,
        run_key=run_key,
        step="7",
        purpose="reset",
        command="./reset.sh",
        cwd=p.inj,
        timeout=max_wait_minutes * MIN,
        env=False,
        poll=max(0.05, min(poll_seconds, 5.0)),
    )
    d = sub.detached
    stderr_lines = [ln for ln in (d.stderr or "").splitlines() if ln.strip()]
    data.update(
        reset_key=sub.key,
        started_now=sub.started,
        exit_code=d.exit_code,
        stdout=(d.stdout or "").strip()[-2000:],
        stderr_lines=stderr_lines[-200:],
    )
    if not d.ok:
        fail(
            step,
            7100,
            f"reset.sh failed (exit {d.exit_code}): {(d.stderr or '').strip()[-300:]}",
            data=data,
            **base,
        )
    after = _probe(site, p, runs)
    files = date_files(p, runs)
    left = sorted(f"{src}/{n}" for src, n, _ in files if f"{src}/{n}" in after["have"])
    archived = sorted(
        f"{dst}/{n}" for _, n, dst in files if dst is not None and f"{dst}/{n}" in after["have"]
    )
    deleted = sorted(
        f"{src}/{n}"
        for src, n, dst in files
        if dst is None
        and before is not None
        and f"{src}/{n}" in before["have"]
        and f"{src}/{n}" not in after["have"]
    )
    data.update(archived=archived, left_behind=left, deleted=deleted, snapshots=after["snapshots"])
    if before is not None:
        data["moved"] = sorted(
            f"{src}/{n}"
            for src, n, _ in files
            if f"{src}/{n}" in before["have"] and f"{src}/{n}" not in after["have"]
        )
    if left:
        fail(
            step,
            LEFT_BEHIND_CODE,
            f"reset.sh exited 0 but {len(left)} files of {date} are still in place: "
            + ", ".join(left[:10])
            + (" ..." if len(left) > 10 else ""),
            data=data,
            **base,
        )
    return StepResult(
        step=step,
        message=(
            f"reset.sh archived {len(archived)} files of {date}"
            + (f", deleted {len(deleted)} check plots" if deleted else "")
            + f"; approved by {who}"
            + ("" if sub.started else " (re-attached to the earlier run)")
        ),
        runs_complete=runs,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- tasks

step7 = declare("step7", "7", "reset.sh: archive this date's working files (needs approval)", reset)
