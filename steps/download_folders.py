"""Where a flow run's downloaded reports live: ``<root>/<round>/<date>/<run name>/``.

Why by round, date and run name: an operator looks for a date's reports by browsing, not by
flow-run UUID. Why an index: the steps, the facade, the CLI and the crashed-run recovery know a
run by its flow-run id, so ``<root>/.runs/<flow run id>`` names the run's folder, and a
``.flow-run`` file inside the folder names the run it belongs to (the facade's ownership
check). Both are hidden entries, which the facade never serves. A run without an index entry
(from before this layout, or a step called outside a flow) keeps ``<root>/<flow run id>/``.

Pure file-system code: no Prefect, no HTTP.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from steps.remote import validate

INDEX_DIR = ".runs"
MARKER = ".flow-run"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def safe_part(value: str) -> str:
    """One path component made of safe characters only (never empty, hidden or '..')."""
    cleaned = _UNSAFE.sub("-", value).strip(".-")[:100]
    return cleaned or "run"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _index_entry(root: Path, flow_run_id: str) -> Path:
    return root / INDEX_DIR / validate.job_key(flow_run_id)


def relative_folder(root: Path, flow_run_id: str) -> str:
    """The run's folder relative to ``root`` (POSIX form); the legacy folder when unindexed."""
    try:
        text = _index_entry(root, flow_run_id).read_text().strip()
    except OSError:
        return validate.job_key(flow_run_id)
    parts = PurePosixPath(text).parts
    if len(parts) != 3 or any(p != safe_part(p) for p in parts):
        return validate.job_key(flow_run_id)  # a damaged entry never points outside the root
    return text


def folder(root: Path, flow_run_id: str) -> Path:
    """Where the downloads of ``flow_run_id`` go (or went)."""
    return root / relative_folder(root, flow_run_id)


def claim(root: Path, flow_run_id: str, *, round: str, date: str, run_name: str) -> Path:
    """The run's folder, created and indexed on the first call; the same folder afterwards.

    A folder of that name that belongs to another run (a second run of the same date with the
    same name) is left alone: this run gets ``<run name>-<first 8 characters of its id>``.
    """
    entry = _index_entry(root, flow_run_id)
    if entry.is_file():
        found = folder(root, flow_run_id)
        found.mkdir(parents=True, exist_ok=True)
        return found
    name = safe_part(run_name)
    rel = PurePosixPath(safe_part(round), safe_part(date), name)
    taken = owner(root, rel.as_posix())
    if taken is not None and taken != flow_run_id:
        rel = rel.with_name(f"{name}-{safe_part(flow_run_id[:8])}")
    target = root / rel
    target.mkdir(parents=True, exist_ok=True)
    _write_atomic(target / MARKER, flow_run_id + "\n")
    _write_atomic(entry, rel.as_posix() + "\n")
    return target


def owner(root: Path, relative: str) -> str | None:
    """The flow-run id a run folder belongs to (None when it is no run folder)."""
    parts = PurePosixPath(relative).parts
    if len(parts) == 1:  # legacy: the folder is named by the flow-run id
        return parts[0] if _UUID.match(parts[0]) and (root / parts[0]).is_dir() else None
    try:
        text = (root / relative / MARKER).read_text().strip()
    except OSError:
        return None
    return text or None


def run_folders(root: Path) -> dict[str, str]:
    """Every run folder under ``root``: flow-run id -> relative folder (legacy ones too)."""
    found: dict[str, str] = {}
    if not root.is_dir():
        return found
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink() and _UUID.match(entry.name):
            found[entry.name] = entry.name
    index = root / INDEX_DIR
    if index.is_dir():
        for entry in index.iterdir():
            if entry.is_file() and not entry.name.startswith("."):
                found[entry.name] = relative_folder(root, entry.name)
    return found
