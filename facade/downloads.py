"""Where downloadable files are and who may read them.

Why strict: file names come from clients. A path is accepted only if, once every symlink is
resolved, it is still inside the downloads root, names no hidden entry, and lies in the run
folder of a flow run the caller owns (admins: anywhere under the root).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
    run_folder: str | None


def content_type(name: str) -> str | None:
    return ALLOWED_TYPES.get(PurePosixPath(name).suffix.lower())


def locate(root: Path, name: str) -> Located:
    """Resolve ``name`` under ``root``; raise UnsafePath for anything that could escape."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        raise UnsafePath(name)
    parts = PurePosixPath(name).parts
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts) or len(parts) > 2:
        raise UnsafePath(name)
    base = root.resolve()
    target = (base / PurePosixPath(*parts)).resolve()
    if not target.is_relative_to(base) or target == base:
        raise UnsafePath(name)
    relative = target.relative_to(base).as_posix()
    if relative != "/".join(parts):  # a symlink inside the root pointing elsewhere in it
        raise UnsafePath(name)
    return Located(target, relative, parts[0] if len(parts) == 2 else None)


def list_files(root: Path, folders: list[str] | None, extension: str | None) -> list[Located]:
    """Regular, allowed, non-hidden files in the given run folders (None: every folder)."""
    base = root.resolve()
    if not base.is_dir():
        return []
    if folders is None:
        folders = [p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")]
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
