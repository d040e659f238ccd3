"""Step 1.3's IST anomaly: a person registers or excludes each run whose IST is off.

The answer must put every run with an anomaly in exactly one of the two lists; an answer
that does not is shown again with what was wrong, under a new pause key (so the earlier
answer stays recorded as given).
"""

from __future__ import annotations

from typing import Any

from flows.date_record import exclude_runs
from flows.decisions import Decisions
from flows.definitions import StepDefinition
from flows.operator import IstDecision, pause_key, run_list
from flows.run_options import RunOptions
from steps.results import StepError

IST_TASK, IST_ANOMALY_CODE = "step1_3", 1302


def is_ist_anomaly(task_name: str, exc: StepError) -> bool:
    """The failure that asks for the run-by-run decision instead of the generic one."""
    info = exc.result.error
    return task_name == IST_TASK and info is not None and info.code == IST_ANOMALY_CODE


def ist_decision(
    decisions: Decisions, o: RunOptions, step: StepDefinition, exc: StepError, attempt: int
) -> dict[str, Any] | None:
    """The task's overrides that apply the person's lists; None = retry (read the values again)."""
    data = exc.result.data
    invalid = sorted(int(r) for r in data.get("invalid_runs") or [])
    rows = _ist_rows(invalid, data.get("ist") or {})
    problem = ""
    n = attempt
    while True:
        got = decisions.hear(
            IstDecision,
            key=pause_key(IST_TASK, "ist", n),
            description=(
                f"## Step {step.label}: IST values other than 15000000\n\n{problem}"
                "| run | From_DB | before sorting | after sorting |\n|---|---|---|---|\n"
                f"{rows}\n\nPut every run above in exactly one list: **register_runs** "
                "(written to interval.txt as 15000000) or **exclude_runs** (left out of "
                "interval.txt and of the round's constants). Or **retry** / **abort**."
            ),
        )
        if got.choice in ("abort", "retry"):
            decisions.record(step, got, "ist")
            got.stop_if_aborted(f"at step {step.label} (IST values)")
            return None
        register, exclude = run_list(got.answer.register_runs), run_list(got.answer.exclude_runs)
        problem = _list_problems(invalid, register, exclude)
        if problem:
            n += 100  # a new pause key: the earlier answer stays recorded as given
            continue
        for decision, runs in (("register", register), ("exclude", exclude)):
            if runs:
                decisions.record(
                    step,
                    got,
                    "ist",
                    decision=decision,
                    note=got.noted(",".join(str(r) for r in runs), sep=": "),
                    task_name=IST_TASK,
                    error_code=IST_ANOMALY_CODE,
                )
        if exclude:
            exclude_runs(o, exclude, reason="ist", by=got.by, note=got.note)
        decisions.log.info("%s registers %s and excludes %s at step 1.3", got.by, register, exclude)
        return {"check_ist": False, "exclude_runs": exclude}


def _ist_rows(invalid: list[int], values: dict[str, Any]) -> str:
    """The form's table: each run's IST from the database, before and after sorting."""
    return "\n".join(
        f"| {r} | {values.get(str(r), {}).get('interval_From_DB')} | "
        f"{values.get(str(r), {}).get('interval_before_sorting')} | "
        f"{values.get(str(r), {}).get('interval_after_sorting')} |"
        for r in invalid
    )


def _list_problems(invalid: list[int], register: list[int], exclude: list[int]) -> str:
    """Why the two lists cannot be applied (empty: they can), for the form shown again."""
    both = sorted(set(register) & set(exclude))
    left = sorted(set(invalid) - set(register) - set(exclude))
    extra = sorted((set(register) | set(exclude)) - set(invalid))
    if not (both or left or extra):
        return ""
    return (
        "**Your last answer was not applied:** "
        + "; ".join(
            t
            for t in (
                f"in both lists: {both}" if both else "",
                f"in neither list: {left}" if left else "",
                f"not runs with an anomaly: {extra}" if extra else "",
            )
            if t
        )
        + "\n\n"
    )
