"""Recording a flow run: outputs DB rows, Prefect artifacts, the workflow tag, progress.

Every step result goes to the store (``store.repository``) and to a table artifact listing its
files; downloaded PDFs also get a link artifact; a progress artifact shows steps done / total;
a markdown artifact and the flow-run tag ``workflow:<name>@<version>`` say which definition
version the run executed. Artifact keys are stable per round, date and step, so the Prefect UI
shows the history of a date across runs, and they sort in procedure order (``KEY_ASC``): the
run's overview first (``a-``), then each step by its label (``s1-4-``), the transcript last
(``z-``).

Artifacts go through the run's ``ArtifactSender`` (a background thread): a step does not wait
for their HTTP requests. ``flush`` runs before every pause and ``finish`` at the end of the run,
so what the operator and the UI see is complete. The progress artifact is updated at most every
``PROGRESS_EVERY_S`` seconds, and always when the run finishes. Store writes stay synchronous:
the store is the record (and the pause forms read it).
"""

from __future__ import annotations

import fnmatch
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.artifacts import LinkArtifact, MarkdownArtifact, ProgressArtifact, TableArtifact
from prefect.logging import get_run_logger

from flows import download_links
from flows.artifact_sender import ArtifactSender
from flows.definitions import StepDefinition, WorkflowDefinition
from flows.naming import run_tags, with_workflow_tag
from steps import download_folders
from steps.results import FileRecord, StepResult
from store import repository

# When set, PDF links point there (``<base>/<round>/<date>/<run name>/<file>``, signed and
# expiring: ``flows.download_links``) instead of file:// URIs.
DOWNLOADS_URL_ENV = "TOPUP_DOWNLOADS_BASE_URL"
# The progress artifact is updated at most this often (and always at the end of the run).
PROGRESS_EVERY_S = 5.0
# How long the flow waits for queued artifacts before a pause and at its end.
FLUSH_TIMEOUT_S = 30.0


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    raw = "-".join(p for p in parts if p)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", raw.lower())).strip("-")[:200]


def step_part(label: str) -> str:
    """The key part that sorts a step's artifacts by its label: ``1.4`` -> ``s1-4``."""
    return "s" + label


RUN_START, RUN_END = "a", "z"  # key parts of the run's overview and of its transcript


@dataclass
class RunRecord:
    """What every record of one flow run shares."""

    flow_run_id: str
    definition: WorkflowDefinition
    round: str
    date: str | None = None
    progress_id: UUID | None = None
    done: list[str] = field(default_factory=list)  # step ids finished (any outcome)
    total: int = 0
    progress_sent: float = 0.0  # monotonic time of the last progress update queued
    progress_shown: int = -1  # steps done at that update
    last_step: str = ""
    # the downloads root of the run's site, once its folder is claimed (``claim_downloads``)
    downloads_root: Path | None = None
    _sender: ArtifactSender | None = field(default=None, repr=False)
    _link_key: bytes | None = field(default=None, repr=False)

    def key(self, *parts: str) -> str:
        return artifact_key(self.round, self.date or "", *parts)

    def link_key(self) -> bytes | None:
        """The download links' signing key (None: no downloads root, or no usable key)."""
        if self._link_key is None and self.downloads_root is not None:
            try:
                self._link_key = download_links.load_key(self.downloads_root)
            except download_links.LinkKeyError as exc:
                get_run_logger().warning("PDF links stay unsigned: %s", exc)
        return self._link_key

    @property
    def sender(self) -> ArtifactSender:
        if self._sender is None:
            self._sender = ArtifactSender(self.flow_run_id)
        return self._sender


# --------------------------------------------------------------------------- the run


def announce(rec: RunRecord, flow_name: str, parameters: dict[str, Any]) -> None:
    """Tag the flow run with its definition, create the store row and the first artifacts."""
    d = rec.definition
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(rec.flow_run_id))
        # idempotent: a retried or resumed run announces itself again
        tags = run_tags(with_workflow_tag(run.tags, d.tag), round=rec.round, date=rec.date)
        if tags != list(run.tags):
            client.update_flow_run(UUID(rec.flow_run_id), tags=tags)
    repository.start_workflow_run(
        flow_run_id=rec.flow_run_id,
        flow_name=flow_name,
        workflow=d.name,
        version=d.version,
        date=rec.date,
        round=rec.round,
        parameters=parameters,
    )
    rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in parameters.items())
    steps = "\n".join(
        f"| {s.label} | `{s.id}` | {s.title} | {s.timeout_minutes:g} | {s.retries} |"
        + (f" {s.approval} |" if s.approval else " |")
        for s in d.steps
    )
    rec.sender.create(
        MarkdownArtifact(
            markdown=(
                f"# {d.title}\n\nDefinition **{d.name}@{d.version}** (tag `{d.tag}`), "
                f"flow run `{rec.flow_run_id}`.\n\n| parameter | value |\n|---|---|\n{rows}\n\n"
                "| step | id | what | timeout (min) | retries | approval |\n"
                f"|---|---|---|---|---|---|\n{steps}\n"
            ),
            key=rec.key(RUN_START, "workflow"),
            description=f"{d.name}@{d.version}",
        )
    )


def claim_downloads(rec: RunRecord, downloads_root: Path, run_name: str) -> Path:
    """The run's reports folder ``<root>/<round>/<date>/<run name>/`` (same one on a retry)."""
    rec.downloads_root = downloads_root
    return download_folders.claim(
        downloads_root,
        rec.flow_run_id,
        round=rec.round,
        date=rec.date or "no-date",
        run_name=run_name,
    )


def start_progress(rec: RunRecord, total: int) -> None:
    rec.total = total

    def created(artifact_id: UUID) -> None:  # in the sender's thread, before any update
        rec.progress_id = artifact_id

    rec.progress_sent, rec.progress_shown = time.monotonic(), 0
    rec.sender.create(
        ProgressArtifact(
            progress=0.0,
            key=rec.key(RUN_START, "progress"),
            description=f"0 / {total} steps of {rec.definition.name}@{rec.definition.version}",
        ),
        then=created,
    )


def advance(rec: RunRecord, step: StepDefinition, total: int) -> None:
    """Count ``step`` as done; update the progress artifact if the last update is old enough."""
    if step.id not in rec.done:
        rec.done.append(step.id)
    rec.total, rec.last_step = total, f"{step.label} {step.id}"
    if time.monotonic() - rec.progress_sent >= PROGRESS_EVERY_S or len(rec.done) >= total:
        _send_progress(rec)


def _send_progress(rec: RunRecord) -> None:
    if rec.progress_shown == len(rec.done) or rec.total <= 0:
        return
    rec.progress_sent, rec.progress_shown = time.monotonic(), len(rec.done)
    rec.sender.update(
        lambda: rec.progress_id,
        data=round(100.0 * len(rec.done) / max(rec.total, 1), 1),
        description=f"{len(rec.done)} / {rec.total} steps done (last: {rec.last_step})",
    )


def flush(rec: RunRecord) -> None:
    """Send what is queued (progress included) before the run pauses or ends."""
    _send_progress(rec)
    rec.sender.flush(FLUSH_TIMEOUT_S)


def finish(rec: RunRecord, status: str, message: str = "") -> None:
    """The run's store row, after its artifacts were sent (the thread ends here)."""
    _send_progress(rec)
    _send_transcript(rec)
    from flows import physics  # the summary again, with the date's final status

    physics.publish_final(rec)
    rec.sender.close(FLUSH_TIMEOUT_S)
    repository.finish_workflow_run(rec.flow_run_id, status, message)


def _send_transcript(rec: RunRecord) -> None:
    """The run's remote commands as a table artifact (``flows.transcript``)."""
    from flows import transcript

    table = transcript.artifact(rec.flow_run_id, rec.key(RUN_END, "transcript"))
    if table is not None:
        rec.sender.create(table)


# --------------------------------------------------------------------------- steps


def _file_row(f: FileRecord) -> dict[str, Any]:
    return f.model_dump(
        include={"path", "size", "sha256", "content_type", "run", "role", "local_path"}
    )


def missing_required(step: StepDefinition, result: StepResult) -> list[str]:
    """Required file patterns the result does not list (``{run}`` per complete run)."""
    names = [Path(f.path).name for f in result.files] + [
        Path(f.local_path).name for f in result.files if f.local_path
    ]
    missing: list[str] = []
    for pattern in step.required_files:
        pat = pattern.replace("{date}", result.date or "")
        if "{run}" in pat:
            wanted = [pat.replace("{run}", str(r)) for r in result.runs_complete]
        else:
            wanted = [pat]
        missing += [w for w in wanted if not fnmatch.filter(names, w)]
    return missing


def _download_name(rec: RunRecord, local: Path) -> str:
    """The file's name under the downloads root (the facade's download route takes it)."""
    if rec.downloads_root is not None:
        try:
            return local.resolve().relative_to(rec.downloads_root.resolve()).as_posix()
        except ValueError:
            pass
    return f"{rec.flow_run_id}/{local.name}"


def download_link(rec: RunRecord, local_path: str) -> str | None:
    """A browser link to a downloaded file through the facade, signed and expiring (None
    when the facade's base URL is not set: no server path is shown instead)."""
    base = os.environ.get(DOWNLOADS_URL_ENV)
    if not base:
        return None
    name = _download_name(rec, Path(local_path))
    key = rec.link_key()
    if key is None:
        return f"{base.rstrip('/')}/{name}"
    ttl = download_links.DownloadLinkSettings().ttl_seconds
    return download_links.signed_url(base, name, key, ttl)


def _download_link(rec: RunRecord, f: FileRecord) -> str:
    """The link artifact's target: the facade's signed link, else a file:// URI (no facade)."""
    local = f.local_path or f.path
    return download_link(rec, local) or Path(local).resolve().as_uri()


def reports_markdown(rec: RunRecord) -> str:
    """The run's downloaded reports as a Markdown list of links (for the approval forms)."""
    pdfs = [o for o in repository.outputs(rec.flow_run_id) if o.role == "download" and o.local_path]
    if not pdfs:
        return ""
    lines, linked = [], False
    for o in pdfs:
        name = Path(o.local_path or o.name).name
        link = download_link(rec, o.local_path or "")
        linked = linked or link is not None
        shown = f"[{name}]({link})" if link else f"`{name}`"
        lines.append(f"\n- {shown} (sha256 `{o.sha256[:16]}…`)")
    note = " (the links open in a browser, with no token, until they expire)" if linked else ""
    return f"\n\nReports of this run{note}:\n" + "".join(lines)


def record_result(
    rec: RunRecord,
    step: StepDefinition,
    task_name: str,
    result: StepResult,
    outcome: str,
) -> list[str]:
    """Store the step's outcome and files; table and link artifacts. Returns missing files."""
    missing = missing_required(step, result) if outcome == "success" else []
    error = result.error.model_dump() if result.error else None
    repository.record_step(
        flow_run_id=rec.flow_run_id,
        step_id=step.id,
        task_name=task_name,
        label=result.step or step.label,
        outcome=outcome,
        message=result.message,
        error=error,
        date=result.date or rec.date,
        round=result.round or rec.round,
        runs_complete=result.runs_complete,
        runs_incomplete=result.runs_incomplete,
        missing_required=missing,
        data=_jsonable(result.data),
        files=[_file_row(f) for f in result.files],
    )
    from flows import physics  # IST, windows, cuts of 1.3/3.2/5.2: kept, summary published

    physics.after_step(rec, task_name, result)
    if result.files:
        rec.sender.create(
            TableArtifact(
                table=[
                    {
                        "file": Path(f.path).name,
                        "run": f.run if f.run is not None else "",
                        "role": f.role,
                        "size": f.size,
                        "sha256": f.sha256,
                        "path": f.local_path or f.path,
                    }
                    for f in result.files
                ],
                key=rec.key(step_part(step.label), task_name, "files"),
                description=f"{result.step or step.label} {step.title}: {len(result.files)} files",
            )
        )
    for f in result.files:
        if f.role == "download":
            rec.sender.create(
                LinkArtifact(
                    link=_download_link(rec, f),
                    link_text=Path(f.local_path or f.path).name,
                    key=rec.key(step_part(step.label), Path(f.local_path or f.path).stem, "pdf"),
                    description=f"{step.label} {step.title} — sha256 {f.sha256}",
                )
            )
    return missing


def record_dry_run(rec: RunRecord, part: str, bounds: dict[str, int], output: str) -> None:
    """Show a database part's ``-sub_switch 0`` output (what the real submission will do)."""
    rec.sender.create(
        MarkdownArtifact(
            markdown=(
                f"## Step 8.{part}: dry run (`-sub_switch 0`) of runs {bounds['run_from']}–"
                f"{bounds['run_to']}\n\n```\n{output[-20000:]}\n```\n"
            ),
            key=rec.key(step_part(f"8.{part}"), "dry-run"),
            description=f"8.{part} dry run, before the operator's approval",
        )
    )


def record_range_check(
    rec: RunRecord, by_date: dict[str, list[int]], problems: dict[int, str]
) -> None:
    """Show which dates the submission's runs come from, and which need a decision."""
    rows = "\n".join(f"| {d} | {len(r)} | {min(r)}–{max(r)} |" for d, r in sorted(by_date.items()))
    bad = "\n".join(f"| {run} | {why} |" for run, why in sorted(problems.items()))
    rec.sender.create(
        MarkdownArtifact(
            markdown=(
                "## Step 8: the dates of the run range\n\n| date | runs | range |\n|---|---|---|\n"
                f"{rows}\n\n"
                + (
                    f"### Runs that need a decision\n\n| run | why |\n|---|---|\n{bad}\n"
                    if bad
                    else "Every run is from a verified date or was submitted before.\n"
                )
            ),
            key=rec.key(step_part("8.0"), "range"),
            description="step 8: dates of the run range",
        )
    )


def record_skipped(rec: RunRecord, step: StepDefinition, reason: str) -> None:
    for task_name in step.tasks:
        repository.record_step(
            flow_run_id=rec.flow_run_id,
            step_id=step.id,
            task_name=task_name,
            label=step.label,
            outcome="skipped",
            message=reason,
            date=rec.date,
            round=rec.round,
        )


def record_decision(
    rec: RunRecord,
    step: StepDefinition,
    *,
    kind: str,
    decision: str,
    decided_by: str,
    note: str = "",
    task_name: str | None = None,
    error_code: int | None = None,
) -> None:
    repository.record_decision(
        flow_run_id=rec.flow_run_id,
        step_id=step.id,
        task_name=task_name,
        kind=kind,
        decision=decision,
        decided_by=decided_by,
        note=note,
        error_code=error_code,
    )


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Step data as JSON (sets, paths and models become plain values)."""
    import json

    return json.loads(json.dumps(data, default=str))
