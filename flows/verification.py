"""Is a date verified? The check before the reset (step 7) and before a submission.

A date is verified when, for every step of its workflow before the reset:
- the step ran (in this flow run, or in an earlier run of the same date when this one started
  later with ``start_at_step``), and did not end in a warning nobody decided on;
- its required files were reported, and every report it must download is on disk with the
  sha256 that was verified against the remote file at download time (hashed again here);
- every run is complete and valid, or a person excluded it (``store.dates.exclude_runs``);
  an IST anomaly (step 1.3) counts as valid only where a person chose "register" for that run.

Each missing item is a sentence an operator can act on; the gate's pause lists them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from flows.definitions import StepDefinition, WorkflowDefinition
from store import dates as date_store
from store import repository
from store.models import StepOutput, StepRun

IST_STEP = "step1_3"


@dataclass
class Verification:
    """What the check found for one date."""

    round: str
    date: str
    missing: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    registered_runs: list[int] = field(default_factory=list)
    excluded_runs: list[int] = field(default_factory=list)
    # runs with an IST anomaly nobody decided on (1.3 ran without the check)
    undecided_ist: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing

    def as_markdown(self) -> str:
        return "\n".join(f"- {m}" for m in self.missing) or "- nothing missing"


def steps_before_reset(definition: WorkflowDefinition) -> list[StepDefinition]:
    """The steps whose outputs the reset and the submission rely on."""
    out: list[StepDefinition] = []
    for step in definition.steps:
        if step.approval is not None or step.kind != "task":
            break
        out.append(step)
    return out


def _sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def _report_problem(name: str, downloads: list[StepOutput]) -> str | None:
    row = next((o for o in downloads if name in (o.name, Path(o.local_path or "").name)), None)
    if row is None or not row.local_path:
        return f"report {name} was not downloaded"
    actual = _sha256(Path(row.local_path))
    if actual is None:
        return f"report {name} is no longer on disk ({Path(row.local_path).name} missing)"
    if actual != row.sha256:
        return f"report {name} does not match the sha256 verified at download time"
    return None


def required_reports(
    step: StepDefinition, sr: StepRun, files: list[StepOutput], date: str
) -> list[str]:
    """The reports of ``step`` this date must have (local names).

    A step that built no report and said why (4.2 for a date without checkShieldCalib
    plots: ``success_code`` and ``pdfs: []``) requires none; a step that built some of its
    families requires those (a family without plots has no PDF); otherwise all of them.
    """
    if sr.data.get("success_code") is not None and sr.data.get("pdfs") == []:
        return []
    names = [p.replace("{date}", date) for p in step.reports]
    built = {o.name for o in files if o.role == "pdf" and o.size > 0}
    if not built:
        return names
    return [
        name
        for name, pattern in zip(names, step.reports, strict=True)
        if pattern.replace("_{date}.pdf", ".pdf") in built
    ]


def _decided(flow_run_id: str, task_name: str) -> bool:
    """A person answered this task's manual error (continue) in that flow run."""
    return any(
        d.task_name == task_name and d.kind == "manual" and d.decision == "continue"
        for d in repository.decisions(flow_run_id)
    )


def _ist_registered(flow_run_id: str) -> set[int]:
    """Runs a person chose to register despite an IST anomaly (decision kind ``ist``)."""
    runs: set[int] = set()
    for d in repository.decisions(flow_run_id):
        if d.kind == "ist" and d.decision == "register":
            runs |= {int(x) for x in d.note.split(":", 1)[0].split(",") if x.strip().isdigit()}
    return runs


def _record_of(
    flow_run_id: str, round: str, date: str, task_name: str
) -> tuple[StepRun | None, str]:
    """The task's record in this run, else the newest successful one of the date."""
    mine = {s.task_name: s for s in repository.step_runs(flow_run_id)}
    sr = mine.get(task_name)
    if sr is not None and sr.outcome != "skipped":
        return sr, flow_run_id
    earlier = repository.latest_step_run(round, date, task_name, ("success", "warning"))
    if earlier is not None:
        return earlier, earlier.flow_run_id
    return None, flow_run_id


def verify_date(
    definition: WorkflowDefinition, *, round: str, date: str, flow_run_id: str
) -> Verification:
    """Check every step before the reset for ``date``; see the module docstring."""
    v = Verification(round=round, date=date)
    excluded = date_store.excluded_runs(round)
    runs: set[int] = set()
    for step in steps_before_reset(definition):
        for task_name in step.tasks:
            sr, owner = _record_of(flow_run_id, round, date, task_name)
            what = f"step {step.label} ({step.title})"
            if sr is None:
                v.missing.append(f"{what} did not run")
                continue
            if sr.outcome == "warning" and not _decided(owner, task_name):
                code = f"[{sr.error_code} {sr.error_name}] " if sr.error_code else ""
                v.missing.append(
                    f"{what} ended with a warning nobody decided on: {code}{sr.message[:300]}"
                )
            elif sr.outcome not in ("success", "warning"):
                v.missing.append(f"{what} ended {sr.outcome}: {sr.message[:300]}")
            if sr.missing_required:
                v.missing.append(
                    f"{what}: required files not reported: {', '.join(sr.missing_required[:10])}"
                )
            runs |= set(sr.runs_complete) | set(sr.runs_incomplete)
            bad = sorted(set(sr.runs_incomplete) - excluded)
            if bad:
                v.missing.append(f"{what}: runs not complete: {bad}")
            if task_name == IST_STEP:
                invalid = {int(r) for r in sr.data.get("invalid_runs") or []}
                registered = _ist_registered(owner)
                v.undecided_ist = sorted(invalid - excluded - registered)
                if v.undecided_ist and sr.data.get("check_ist") is False:
                    v.missing.append(
                        f"{what}: runs {v.undecided_ist} have IST values other than 15000000 "
                        "and nobody chose to register or exclude them"
                    )
                v.registered_runs = sorted(
                    {int(r) for r in sr.data.get("appended_runs") or []}
                    | {int(r) for r in sr.data.get("already_present_runs") or []}
                )
            if step.reports:
                files = [o for o in repository.outputs(owner) if o.task_name == task_name]
                downloads = [o for o in files if o.role == "download"]
                for name in required_reports(step, sr, files, date):
                    problem = _report_problem(name, downloads)
                    if problem:
                        v.missing.append(f"{what}: {problem}")
    v.runs = sorted(runs)
    v.excluded_runs = sorted(runs & excluded)
    return v
