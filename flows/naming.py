"""What runs are called: flow-run names, task-run names, tags, and the decision a run waits for.

Why one module: the CLI, the facade, the flows and the notifications all name the same runs;
an operator finds a run by what it is (``round18-250624-topup-standard-1.2.0``), not by a
random name, and a retried run must not collect the same tag twice. Pure functions only (no
Prefect, no I/O) except :func:`flow_run_name_of_context`, the ``flow_run_name`` callable the
flows hand to Prefect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

ROUND_TAG = "round:"
DATE_TAG = "date:"
WORKFLOW_TAG = "workflow:"
# The flow-run label the flow sets before it pauses: what the operator must decide.
WAITS_LABEL = "topup.waits"

_UNSAFE = re.compile(r"[^A-Za-z0-9.]+")
MAX_PART = 40
MAX_NAME = 120


def name_part(value: Any) -> str:
    """One part of a run name: letters, digits and dots only, never empty, never too long.

    Parameters reach here before the flow validated them (Prefect names the run first), so
    anything may come in; the name must stay readable and valid whatever it is.
    """
    text = _UNSAFE.sub("-", str(value)).strip("-.")[:MAX_PART].strip("-.")
    return text or "x"


def _join(*parts: Any) -> str:
    return "-".join(name_part(p) for p in parts if p not in (None, ""))[:MAX_NAME]


def flow_run_name(flow: str, params: Mapping[str, Any], version: str | None = None) -> str:
    """The name of a run of ``flow`` with ``params`` (``version``: the definition's).

    - topup-standard: ``round18-250624-topup-standard-1.2.0``
    - submit-constants: ``round18-submit-constants`` (+ ``-<from>-<to>`` for a run range)
    - backfill: ``round18-backfill`` (+ ``-<first>-<last>`` date once they are known)
    - available-dates: ``round18-available-dates-1.0.0`` (or its legacy definition's name)
    """
    rnd = params.get("round") or "round"
    workflow = params.get("workflow") or flow
    version = version or params.get("workflow_version")
    if flow == "topup-standard":
        return _join(rnd, params.get("date") or "nodate", workflow, version)
    if flow == "submit-constants":
        lo, hi = params.get("run_from"), params.get("run_to")
        span = (lo or "first", hi or "last") if (lo or hi) else ()
        return _join(rnd, flow, *span)
    if flow == "backfill":
        return _join(rnd, flow, *date_span(params.get("dates")))
    return _join(rnd, workflow, version)


def date_span(dates: str | Iterable[str] | None) -> tuple[str, ...]:
    """``("250601", "250624")`` for several dates, ``("250624",)`` for one, () for none."""
    if dates is None:
        return ()
    items = dates.split(",") if isinstance(dates, str) else list(dates)
    clean = sorted({str(d).strip() for d in items if str(d).strip()})
    if not clean:
        return ()
    return (clean[0],) if len(clean) == 1 else (clean[0], clean[-1])


def flow_run_name_of_context(flow: str) -> str:
    """``flow_run_name`` of the project's flows: the name from the run's own parameters.

    Never raises (a failure here would end the run before its parameters are checked and
    reported); the definition's version comes from the definition the run will load.
    """
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    params: dict[str, Any] = dict(ctx.parameters or {}) if ctx is not None else {}
    version: str | None = None
    try:
        from flows.definitions import load

        definition = load(str(params.get("workflow") or flow), params.get("workflow_version"))
        version = definition.version
    except Exception:  # unknown workflow or version: the flow itself says so, by name
        version = None
    try:
        return flow_run_name(flow, params, version)
    except Exception:
        return name_part(flow)


def run_tags(existing: Iterable[str], *, round: str | None, date: str | None = None) -> list[str]:
    """The run's tags with exactly one ``round:`` and at most one ``date:`` tag.

    Idempotent: applying it to its own output changes nothing, so the CLI, the facade, a
    backfill's children and every retry of a run can all call it. Other tags keep their order;
    duplicates go.
    """
    out: list[str] = []
    for tag in existing:
        if tag.startswith((ROUND_TAG, DATE_TAG)) or tag in out:
            continue
        out.append(tag)
    if round:
        out.append(f"{ROUND_TAG}{round}")
    if date:
        out.append(f"{DATE_TAG}{date}")
    return out


def with_workflow_tag(existing: Iterable[str], workflow_tag: str) -> list[str]:
    """Replace any ``workflow:`` tag with ``workflow_tag`` (the definition that really runs)."""
    return [t for t in dict.fromkeys(existing) if not t.startswith(WORKFLOW_TAG)] + [workflow_tag]


# ------------------------------------------------------------------------ task runs

_PART_WORDS = {"range": "run range", "prepare": "dry run", "submit": "database submission"}


def task_run_name(label: str, title: str, task_name: str, tasks: list[str]) -> str:
    """``1.4 Merge the interval plots into a PDF and download it`` for a task run.

    A step with several tasks (step 8) names the part: ``8.1 dry run``. Braces are doubled:
    Prefect formats a string ``task_run_name`` with the task's parameters.
    """
    if len(tasks) <= 1:
        text = f"{label} {title}"
    else:
        words = task_name.split("_")[1:]  # step8_1_prepare -> ["1", "prepare"]
        part = [w for w in words if w.isdigit()]
        what = " ".join(_PART_WORDS.get(w, w) for w in words if not w.isdigit())
        text = f"{label}{'.' + '.'.join(part) if part else ''} {what or title}"
    return text.replace("{", "{{").replace("}", "}}")


def task_of(task_key: str) -> str:
    """The step task's name from a task run's ``task_key`` (``step1_4-1a2b3c4d`` -> ``step1_4``).

    Why the key and not the run's name: the name is for people (the step's label and title);
    the key is the task function's name plus a hash of its code.
    """
    return task_key.rsplit("-", 1)[0] if "-" in task_key else task_key


# ------------------------------------------------------------------------ pauses

_KIND_WORDS = {
    "approve": "approval",
    "verify": "verification (date not verified)",
    "ist": "IST decision",
    "manual": "decision on an error",
    "outage": "decision after losing the site",
    "review": "review",
    "range": "run range decision",
    "settle": "decision on an earlier submission",
    "again": "decision on submitting again",
    "failed": "decision on a failed submission",
}
_APPROVAL_WORDS = {"reset": "reset approval", "db_submit": "database submission approval"}


def waiting_for(key: str, steps: Iterable[Any] = ()) -> str:
    """What a pause with ``key`` waits for: ``step 7 reset approval``.

    ``steps``: the definition's steps (``id``, ``label``, ``tasks``, ``approval``), to say the
    step's label; without them the key's own step number is used.
    """
    words = key.split("-")
    if not words[0].startswith("step"):
        return f"decision ({key})"
    best: tuple[bool, int, Any, str] = (False, 0, None, "")
    for step in steps:
        for name in dict.fromkeys([step.id, *getattr(step, "tasks", [])]):
            prefix = name.replace("_", "-").split("-")
            if words[: len(prefix)] != prefix:
                continue
            found = (any(w in _KIND_WORDS for w in words[len(prefix) :]), len(prefix), step, name)
            if found[:2] > best[:2]:
                best = found
    _, n, step, matched = best
    if step is None:
        n = 1
        label = words[0].removeprefix("step")
        rest = words[1:]
        while rest and rest[0].isdigit():  # step1-3-... -> 1.3
            label += "." + rest.pop(0)
            n += 1
    else:
        label = step.label
    rest = words[n:]
    kind = next((w for w in rest if w in _KIND_WORDS), None)
    at = rest.index(kind) if kind else len(rest)
    sub = [w for w in rest[:at] if w.isdigit()]
    if getattr(step, "kind", None) == "database":
        if kind == "approve":  # step8-approve-1: the part follows the kind
            sub = [w for w in rest[at + 1 :] if w.isdigit()][:1]
        if sub and sub[0] == label:  # step8-8-1-again-3: the part is spelled out
            sub = sub[1:]
    else:
        sub = []  # trailing numbers of other steps count attempts
    if kind == "approve" and step is not None and step.approval in _APPROVAL_WORDS:
        text = _APPROVAL_WORDS[step.approval]
    else:
        text = _KIND_WORDS.get(kind or "", "decision")
    if step is not None and matched != step.id and len(step.tasks) > 1:
        task = task_run_name(label, step.title, matched, step.tasks).replace("{{", "{")
        return f"step {task.replace('}}', '}')}: {text}"
    return f"step {label}{'.' + '.'.join(sub) if sub else ''} {text}"
