"""Read-only access to the flows' outputs store (``store/``): step results and files.

Why through here: the facade never writes these tables, and every read goes to the same
database URL as the facade's own tables (``TOPUP_DATABASE_URL``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from facade.responses import iso
from store import repository
from store.models import StepOutput, StepRun


def step_results(database_url: str, flow_run_ids: list[str]) -> dict[tuple[str, str], StepRun]:
    """Latest recorded outcome per (flow run, task name)."""
    out: dict[tuple[str, str], StepRun] = {}
    for fid in flow_run_ids:
        for row in repository.step_runs(fid, url=database_url):
            out[(fid, row.task_name)] = row
    return out


def step_result_json(
    row: StepRun | None,
    *,
    task_id: int | None = None,
    step_order: int | None = None,
    elapsed: float | None = None,
) -> dict[str, Any]:
    """What the legacy ``step_result_json`` carried: the step's facts, not its envelope.

    The step's own facts sit at the top level under the keys legacy clients read
    (``total_runs``, ``invalid_runs``, ``all_dates`` ...), with the legacy aliases
    ``complete_runs`` / ``incomplete_runs`` / ``elapsed_time``; a downloaded file's
    ``*_local_path`` is the legacy relative ``downloads/<task>_<step order>/<file>`` (never a
    server path), with ``*_download_url`` beside it for the facade's download route.
    """
    if row is None:
        return {}
    data: dict[str, Any] = dict(row.data or {})
    for key, value in list(data.items()):
        if key.endswith("local_path") and isinstance(value, str) and value:
            name = PurePosixPath(value.replace("\\", "/")).name
            folder = f"{task_id}_{step_order}" if task_id is not None else row.flow_run_id
            data[key] = f"downloads/{folder}/{name}"
            data[key.removesuffix("local_path") + "download_url"] = (
                f"/api/downloads/{row.flow_run_id}/{name}"
            )
    if elapsed is not None:
        data.setdefault("elapsed_time", elapsed)
    lines = data.get("interval_lines")
    if isinstance(lines, list):  # 1.3: the legacy text of this date's interval.txt lines
        data.setdefault("interval_file_content", "\n".join(str(ln) for ln in lines))
    return {
        **data,
        "step_name": row.task_name,
        "label": row.label,
        "outcome": row.outcome,
        "date": row.date if row.date is not None else data.get("date"),
        "round": row.round,
        "runs_complete": list(row.runs_complete),
        "runs_incomplete": list(row.runs_incomplete),
        "complete_runs": list(row.runs_complete),
        "incomplete_runs": list(row.runs_incomplete),
        "missing_required": list(row.missing_required),
        "error_code": row.error_code,
        "error_name": row.error_name,
    }


def files(database_url: str, flow_run_id: str, task_name: str | None = None) -> list[StepOutput]:
    rows = repository.outputs(flow_run_id, url=database_url)
    return [r for r in rows if task_name is None or r.task_name == task_name]


def output_record(row: StepOutput, execution_id: int | None) -> dict[str, Any]:
    """A ``step_outputs`` row in the legacy shape (plus where the file is)."""
    return {
        "id": row.id,
        "execution_id": execution_id,
        "output_type": "file",
        "output_path": row.path,
        "file_name": row.name,
        "file_size_bytes": row.size,
        "file_hash": row.sha256,
        "content_type": row.content_type,
        "metadata": {"role": row.role, "run": row.run, "date": row.date, "round": row.round},
        # relative to the downloads root (the download route's name), never a server path
        "local_path": _download_name(row),
        "download_url": f"/api/downloads/{_download_name(row)}" if row.local_path else None,
        "step_name": row.step_id,
        "task_name": row.task_name,
        "created_at": iso(row.recorded_at),
    }


def _download_name(row: StepOutput) -> str | None:
    if not row.local_path:
        return None
    return f"{row.flow_run_id}/{PurePosixPath(row.local_path).name}"
