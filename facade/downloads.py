"""Where downloadable files are and who may read them.

Why strict: file names come from clients. A path is accepted only if, once every symlink is
resolved, it is still inside the downloads root, names no hidden entry, and lies in the run
folder of a flow run the caller owns (admins: anywhere under the root).

Run folders (``steps.download_folders``): ``<round>/<date>/<run name>`` since issue 14, the
flow-run id before. A name ``<flow run id>/<file>`` still works for a run of either kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from steps import download_folders

ALLOWED_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".root": "application/octet-stream",
    ".json": "application/json",
}
# The merged PDFs by step, with the legacy local names (``<stem>_<date>.pdf``).
MERGED_PDF_STEMS = {
    "step1_4": "mergedd_IST",
    "step2_5": "mergedd_Hist",
    "step5_4": "mergedd_ETS_raw",
    "step6_2": "mergedd_ETS_checkall",
}
DATE_RE = re.compile(r"^\d{6}$")


class UnsafePath(ValueError):
    """The name tries to leave the root, or names something hidden."""


@dataclass(frozen=True)
class Located:
    path: Path  # resolved, inside the root
    relative: str  # "<run folder>/<name>" (or "<name>" at the top level)
    run_folder: str | None  # "<round>/<date>/<run name>" (legacy: "<flow run id>")


def content_type(name: str) -> str | None:
    return ALLOWED_TYPES.get(PurePosixPath(name).suffix.lower())


def _canonical(root: Path, parts: tuple[str, ...]) -> tuple[str, ...]:
    """``<flow run id>/<file>`` of an indexed run names the file in its new folder."""
    if len(parts) != 2 or (root / parts[0]).is_dir():
        return parts
    try:
        folder = download_folders.relative_folder(root, parts[0])
    except ValueError:
        return parts
    return (*PurePosixPath(folder).parts, parts[1])


def locate(root: Path, name: str) -> Located:
    """Resolve ``name`` under ``root``; raise UnsafePath for anything that could escape."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        raise UnsafePath(name)
    parts = PurePosixPath(name).parts
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts) or len(parts) not in (1, 2, 4):
        raise UnsafePath(name)
    base = root.resolve()
    parts = _canonical(base, parts)
    target = (base / PurePosixPath(*parts)).resolve()
    if not target.is_relative_to(base) or target == base:
        raise UnsafePath(name)
    relative = target.relative_to(base).as_posix()
    if relative != "/".join(parts):  # a symlink inside the root pointing elsewhere in it
        raise UnsafePath(name)
    folder = "/".join(parts[:-1]) or None
    return Located(target, relative, folder)


def owner(root: Path, located: Located) -> str | None:
    """The flow-run id whose folder holds the file (None: no run's)."""
    if located.run_folder is None:
        return None
    return download_folders.owner(root.resolve(), located.run_folder)


def run_folders(root: Path, flow_run_ids: list[str]) -> dict[str, str]:
    """Run folder (relative) -> flow-run id, for these runs."""
    base = root.resolve()
    out: dict[str, str] = {}
    for fid in flow_run_ids:
        try:
            out[download_folders.relative_folder(base, fid)] = fid
        except ValueError:
            continue
    return out


def all_run_folders(root: Path) -> dict[str, str]:
    """Every run folder under the root (relative) -> flow-run id."""
    return {folder: fid for fid, folder in download_folders.run_folders(root.resolve()).items()}


def list_files(root: Path, folders: list[str] | None, extension: str | None) -> list[Located]:
    """Regular, allowed, non-hidden files in the given run folders (None: every folder)."""
    base = root.resolve()
    if not base.is_dir():
        return []
    if folders is None:
        folders = list(all_run_folders(base))
    found = []
    for folder in folders:
        directory = base / folder
        if not directory.is_dir() or directory.is_symlink():
            continue
        for entry in directory.iterdir():
            if entry.name.startswith(".") or entry.is_symlink() or not entry.is_file():
                continue
            if content_type(entry.name) is None:
                continue
            if extension and entry.suffix.lower() != f".{extension.lower()}":
                continue
            found.append(Located(entry, f"{folder}/{entry.name}", folder))
    found.sort(key=lambda loc: loc.path.stat().st_mtime, reverse=True)
    return found
