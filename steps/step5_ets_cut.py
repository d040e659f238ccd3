"""Steps 5.1 – 5.4: ETS-cut jobs, ``add_shield.sh``, tidy ``ets_cut.txt``, the ETS_raw PDF.

Remote effects are the legacy ones (spec steps-3-6.md §6–9): in ``ETS_cut`` the cleanup
``rm -f plot* run*``, ``./genJob.sh`` (one ``hep_sub`` job per hist file) drawing
``run{run}_cut.png`` / ``run{run}_total.png``; ``./add_shield.sh`` appending the
``shield*.txt`` windows to ``ets_cut.txt``; the grep/sort/uniq transformation of §8.5; the
SL6-container ``convert`` into ``mergedd_ETS_raw.pdf``, downloaded as
``mergedd_ETS_raw_{date}.pdf``.

Not reproduced: the endless interactive genJob, the resubmission of everything on a retry,
re-appending this date's windows on a re-run, 5.3 failing for ever when the filter leaves
nothing (grep exit 1) and leaving ``ets_cut_temp.txt`` behind, three separate non-atomic
rewrites, and a PDF of every ``run*.png`` in the directory (possibly a stale one).

Added: the shield file name is the site setting ``shield_file_pattern`` (the documents show
``shield{run}.txt`` and ``shield_run{run}.txt``). A date counts as topup data when one of its
runs has ETS windows (``ETS_cut/run{run}.root``, written only then, §6.5), 50 Hz windows in
``window.dat`` (a non-topup run leaves only its number, §2.5) or an interval other than the
non-topup sentinel 15000000 in ``interval.txt``. For topup data, 5.2 fails (5202, manual)
instead of skipping ``add_shield.sh`` when no shield file matches the pattern, or when a run
with ETS windows has none; 5.3 fails (5304, manual) when ``ets_cut.txt`` ends up empty.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from steps.batch_stage import JobStage, run_stage
from steps.cumulative import append_with_script, dedupe_command, read_lines
from steps.declare import declare
from steps.file_records import FileSpec, file_records
from steps.remote.site import RemoteSite
from steps.remote.validate import q, qpath
from steps.reports import date_pdf
from steps.results import StepResult
from steps.runs_dates import check_inputs
from steps.step_log import fail, step_logger

MIN = 60.0

ETS_CUT = JobStage(
    step="5.1",
    directory=lambda p: p.ets_cut,
    cleanup="rm -f plot* run*",
    job_file="plot_ETS_{run}.txt",
    outputs=("run{run}_cut.png", "run{run}_total.png"),
    optional_outputs=("shield{run}.txt", "run{run}.root"),  # only runs with noise windows
    genjob_code=5100,
    no_job_files_code=5103,
    no_job_files_skip_code=5103,
    timeout_code=5104,
)

NO_SHIELD_CODE = 5202  # STEP5_2_NO_SHIELD_FILE (manual)
EMPTY_ETS_CUT_CODE = 5304  # STEP5_3_EMPTY_ETS_CUT (manual)
NON_TOPUP_INTERVAL = "15000000"  # the interval.txt value of a non-topup run (steps-0-2 §8.3)

# Exit codes of the tidy script → dictionary codes (which pass failed).
_TIDY_CODES = {10: 5300, 11: 5300, 20: 5300, 21: 5301, 22: 5302, 23: 5300}
_TIDY_WHY = {
    10: "cannot enter the ETS_cut directory",
    11: "ets_cut.txt does not exist",
    20: "grep of the bare run-number lines failed",
    21: "sort failed",
    22: "uniq failed",
    23: "replacing ets_cut.txt failed",
}


# --------------------------------------------------------------------------- 5.1


def ets_cut_jobs(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    max_wait_minutes: float = 25,
    poll_seconds: float = 30,
    submit_job: bool = True,
    genjob_timeout_minutes: float = 30,
) -> StepResult:
    """Step 5.1: submit the ETS-cut jobs once; wait for both plots of every run."""
    stage = replace(ETS_CUT, optional_outputs=(site.settings.shield_file_pattern, "run{run}.root"))
    result = run_stage(
        stage,
        site,
        date=date,
        round=round,
        run_key=run_key,
        submit_job=submit_job,
        max_wait_minutes=max_wait_minutes,
        poll_seconds=poll_seconds,
        genjob_timeout_minutes=genjob_timeout_minutes,
    )
    result.data["shield_runs"] = sorted(
        {rec.run for rec in result.files if rec.path.rsplit("/", 1)[-1].startswith("shield")}
        - {None}
    )
    return result


# --------------------------------------------------------------------------- topup data


@dataclass(frozen=True)
class TopupEvidence:
    """Why a date counts as topup data, and the shield files present in ETS_cut."""

    ets_window_runs: list[int]  # ETS_cut/run{run}.root exists (ETS windows found)
    window_runs: list[int]  # window.dat has 50 Hz windows for the run
    interval_runs: dict[int, str]  # interval.txt value other than 15000000
    shield_files: list[str]  # every shield* file in ETS_cut

    @property
    def topup_runs(self) -> list[int]:
        return sorted({*self.ets_window_runs, *self.window_runs, *self.interval_runs})

    def describe(self) -> str:
        parts = []
        if self.ets_window_runs:
            parts.append(f"ETS windows (run{{run}}.root) for runs {self.ets_window_runs}")
        if self.window_runs:
            parts.append(f"50 Hz windows in window.dat for runs {self.window_runs}")
        if self.interval_runs:
            parts.append(f"topup intervals in interval.txt: {self.interval_runs}")
        return "; ".join(parts) or "no topup run"


def topup_evidence(site: RemoteSite, round: str, runs: list[int]) -> TopupEvidence:
    """One command: which of ``runs`` are topup runs, and the shield files in ETS_cut."""
    p = site.paths(round)
    listed = " ".join(str(int(r)) for r in runs)
    head = 'BEGIN { n = split(RUNS, a, " "); for (k = 1; k <= n; k++) r[a[k]] = 1 } ($1 in r) && '
    windows = head + 'NF > 1 { print "::window:: " $1 }'
    topup = head + f'NF > 1 && $2 != "{NON_TOPUP_INTERVAL}" {{ print "::interval:: " $1, $2 }}'
    window_dat = qpath(f"{p.search_peak}/window.dat")
    interval_txt = qpath(f"{p.inj}/interval.txt")
    cmd = (
        f"cd {qpath(p.ets_cut)} || exit 3; "
        'for f in shield*; do [ -e "$f" ] && echo "::shield:: $f"; done; '
        f'for r in {listed}; do [ -e "run$r.root" ] && echo "::ets:: $r"; done; '
        f"awk -v RUNS={q(listed)} {q(windows)} {window_dat} 2>/dev/null; "
        f"awk -v RUNS={q(listed)} {q(topup)} {interval_txt} 2>/dev/null; exit 0"
    )
    res = site.run(cmd)
    if res.exit_code == 3:
        raise FileNotFoundError(p.ets_cut)
    ets: set[int] = set()
    window: set[int] = set()
    interval: dict[int, str] = {}
    shields: list[str] = []
    for line in res.stdout.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "::shield::":
            shields.append(rest)
        elif tag == "::ets::" and rest.isdigit():
            ets.add(int(rest))
        elif tag == "::window::" and rest.isdigit():
            window.add(int(rest))
        elif tag == "::interval::":
            run, _, value = rest.partition(" ")
            if run.isdigit():
                interval[int(run)] = value
    return TopupEvidence(sorted(ets), sorted(window), interval, sorted(shields))


# --------------------------------------------------------------------------- 5.2


def run_add_shield(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    poll_seconds: float = 30,
    script_timeout_minutes: float = 10,
) -> StepResult:
    """Step 5.2: ``./add_shield.sh`` once (skipped when this date's windows are already in
    ets_cut.txt, or when no run of this date is a topup run and none has a shield file).

    Topup data without a shield file named by ``shield_file_pattern`` (or a run with ETS
    windows but no such file) is 5202 ``manual``; a failing script is 5200 ``continue``.
    """
    step = "5.2"
    runs = check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).ets_cut
    base: dict[str, Any] = {"date": date, "round": round}
    pattern = site.settings.shield_file_pattern
    names = [site.settings.shield_file(r) for r in runs]
    try:
        lines = read_lines(site, directory, names, "ets_cut.txt")
        evidence = topup_evidence(site, round, runs)
    except FileNotFoundError:
        fail(step, 5200, f"{directory} does not exist", **base)
    with_shield = sorted(
        r for r, n in zip(runs, names, strict=True) if lines.per_file[n] is not None
    )
    mine = lines.mine
    data: dict[str, Any] = {
        "shield_runs": with_shield,
        "shield_file_pattern": pattern,
        "shield_files_found": evidence.shield_files,
        "topup_runs": evidence.topup_runs,
        "ets_window_runs": evidence.ets_window_runs,
        "ets_lines_of_date": mine,
        "ets_lines_before": len(lines.target or []),
        # parsed here, where the file is read: the physics summary reads these numbers
        "ets_cuts": lines.windows(),
    }
    without = sorted(set(evidence.ets_window_runs) - set(with_shield))
    if (evidence.topup_runs and not with_shield) or without:
        missing = without or evidence.topup_runs
        fail(
            step,
            NO_SHIELD_CODE,
            f"{date} has topup runs ({evidence.describe()}) but no shield file matches "
            f"shield_file_pattern {pattern!r} for runs {missing} (looked for "
            f"{', '.join(site.settings.shield_file(r) for r in missing)}); shield files in "
            f"ETS_cut: {', '.join(evidence.shield_files) or 'none'}",
            runs_incomplete=missing,
            data=data,
            **base,
        )
    if not with_shield:
        # No topup run: ETS_cut.cpp writes no shield file when it finds no noise region.
        return StepResult(
            step=step,
            message=f"no shield file of {date}: no ETS window to append",
            data={**data, "appended": False},
            **base,
        )
    already = lines.all_present
    data["already_present"] = already
    if not already:
        append_with_script(
            site,
            step,
            "add_shield.sh",
            data,
            code=5200,
            run_key=run_key,
            directory=directory,
            timeout=script_timeout_minutes * MIN,
            poll_seconds=poll_seconds,
            **base,
        )
        res = site.run(
            f"cd {qpath(directory)} || exit 3; {dedupe_command(names, 'ets_cut.txt')}; "
            "wc -l < ets_cut.txt"
        )
        if not res.ok:
            fail(
                step,
                5200,
                f"removing repeated lines of {date} from ets_cut.txt failed: {res.stderr[-300:]}",
                data=data,
                **base,
            )
        data["ets_lines_after"] = int(res.stdout.split()[-1]) if res.stdout.split() else 0
    else:
        step_logger().info("5.2: the %d ETS lines of %s are already there", len(mine), date)
    data["appended"] = not already
    files = file_records(site, [FileSpec(f"{directory}/ets_cut.txt", None, "output")])
    return StepResult(
        step=step,
        message=(
            f"ets_cut.txt already held the {len(mine)} window lines of {date}"
            if already
            else f"add_shield.sh appended the shield files of {len(with_shield)} runs"
        ),
        runs_complete=with_shield,
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 5.3


def tidy_command(directory: str) -> str:
    """The §8.5 transformation in one command, atomically (temp file + mv).

    grep drops bare run-number lines (exit 1 = nothing left is fine: an empty file), sort by
    the run number, uniq drops adjacent duplicates; byte order (LC_ALL=C) as the spec's
    examples. Exit codes name the failing pass.
    """
    return (
        f"cd {qpath(directory)} || exit 10; test -f ets_cut.txt || exit 11; "
        "export LC_ALL=C; "
        "grep -vE '^[0-9]+$' ets_cut.txt | sort -n -k1,1 | uniq > ets_cut_temp.txt; "
        's=("${PIPESTATUS[@]}"); '
        'if [ "${s[0]}" -gt 1 ]; then rm -f ets_cut_temp.txt; exit 20; fi; '
        'if [ "${s[1]}" -ne 0 ]; then rm -f ets_cut_temp.txt; exit 21; fi; '
        'if [ "${s[2]}" -ne 0 ]; then rm -f ets_cut_temp.txt; exit 22; fi; '
        "mv -f ets_cut_temp.txt ets_cut.txt || exit 23; cat ets_cut.txt"
    )


def tidy_ets_cut(site: RemoteSite, *, date: str, round: str, run_key: str) -> StepResult:
    """Step 5.3: drop bare run-number lines, sort by run, drop repeated lines (idempotent)."""
    step = "5.3"
    runs = check_inputs(step, site, round, date, run_key)
    directory = site.paths(round).ets_cut
    base: dict[str, Any] = {"date": date, "round": round}
    res = site.run(tidy_command(directory))
    if not res.ok:
        code = _TIDY_CODES.get(res.exit_code, 5300)
        why = _TIDY_WHY.get(res.exit_code, f"exit {res.exit_code}")
        fail(step, code, f"tidying ets_cut.txt: {why}: {res.stderr.strip()[-300:]}", **base)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    files = file_records(site, [FileSpec(f"{directory}/ets_cut.txt", None, "output")])
    data: dict[str, Any] = {
        "lines": len(lines),
        "runs": sorted({int(ln.split()[0]) for ln in lines if ln.split()[0].isdigit()}),
        "file_content": res.stdout,
    }
    if not lines:
        evidence = topup_evidence(site, round, runs)
        if evidence.topup_runs:
            data.update(topup_runs=evidence.topup_runs, shield_files_found=evidence.shield_files)
            fail(
                step,
                EMPTY_ETS_CUT_CODE,
                f"ets_cut.txt is empty after tidying, but {date} has topup runs "
                f"({evidence.describe()}); shield files in ETS_cut: "
                f"{', '.join(evidence.shield_files) or 'none'}",
                files=files,
                runs_incomplete=evidence.topup_runs,
                data=data,
                **base,
            )
    return StepResult(
        step=step,
        message=f"ets_cut.txt tidied: {len(lines)} window lines",
        files=files,
        data=data,
        **base,
    )


# --------------------------------------------------------------------------- 5.4


def merge_ets_raw(
    site: RemoteSite,
    *,
    date: str,
    round: str,
    run_key: str,
    merge_timeout_minutes: float = 10,
) -> StepResult:
    """Step 5.4: ``mergedd_ETS_raw.pdf`` from this date's cut/total plots, downloaded."""
    return date_pdf(
        "5.4",
        site,
        date=date,
        round=round,
        run_key=run_key,
        directory=lambda p: p.ets_cut,
        pngs=lambda r: [f"run{r}_cut.png", f"run{r}_total.png"],
        pdf_name="mergedd_ETS_raw.pdf",
        merge_code=5401,
        download_code=5403,
        merge_timeout_minutes=merge_timeout_minutes,
    )


# --------------------------------------------------------------------------- tasks

step5_1 = declare("step5_1", "5.1", "ETS-cut jobs, wait for the cut and total plots", ets_cut_jobs)
step5_2 = declare("step5_2", "5.2", "add_shield.sh", run_add_shield)
step5_3 = declare("step5_3", "5.3", "Tidy ets_cut.txt", tidy_ets_cut)
step5_4 = declare(
    "step5_4", "5.4", "Merge the ETS_cut plots into a PDF and download it", merge_ets_raw
)
