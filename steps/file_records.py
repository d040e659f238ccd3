"""What a step says about the remote files it made or checked: ``FileRecord``s, in one call.

Why its own module: every step ends by recording its files with the same facts (size,
sha256, content type, run, role) from ONE ``file_facts`` call, and every explicit file list
a remote command gets is made of plain names (no glob may expand).

- ``file_records(site, specs) -> list[FileRecord]`` — ONE ``file_facts`` call; ``specs`` are
  ``FileSpec(path, run, role)`` or plain tuples; files that do not exist are skipped.
- ``content_type(path) -> str`` — by extension.
- ``plain_name(value) -> str`` — a validated file name without glob characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from steps.remote import validate
from steps.remote.validate import InvalidValue
from steps.results import FileRecord

if TYPE_CHECKING:
    from steps.remote.site import RemoteSite

__all__ = ["FileSpec", "content_type", "file_records", "plain_name"]

PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]{1,200}$")


def plain_name(value: str) -> str:
    """A file name without glob characters (explicit lists must not expand)."""
    validate.file_name(value)
    if not PLAIN_NAME_RE.match(value):
        raise InvalidValue("file name", value)
    return value


_CONTENT_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".bosslog": "text/plain",
    ".bosserr": "text/plain",
    ".out": "text/plain",
    ".err": "text/plain",
    ".dat": "text/plain",
    ".root": "application/root",
}


def content_type(path: str) -> str:
    """Content type by extension; anything unknown is ``application/octet-stream``."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    if dot <= 0:
        return "application/octet-stream"
    return _CONTENT_TYPES.get(name[dot:].lower(), "application/octet-stream")


class FileSpec(NamedTuple):
    """A remote file to describe: its path, the run it belongs to, its role."""

    path: str
    run: int | None = None
    role: str = "output"


def file_records(
    site: RemoteSite, specs: Iterable[FileSpec | tuple[Any, ...] | str]
) -> list[FileRecord]:
    """FileRecords for the files that exist, from ONE ``file_facts`` call (order kept).

    Files that do not exist are skipped; compare the result with what you expected.
    """
    items = [_as_spec(s) for s in specs]
    if not items:
        return []
    facts = site.file_facts([validate.path(s.path) for s in items])
    records: list[FileRecord] = []
    for s in items:
        f = facts.get(s.path)
        if f is None:
            continue
        records.append(
            FileRecord(
                path=s.path,
                size=f.size,
                sha256=f.sha256,
                content_type=content_type(s.path),
                run=s.run,
                role=s.role,  # type: ignore[arg-type]
            )
        )
    return records


def _as_spec(value: FileSpec | tuple[Any, ...] | str) -> FileSpec:
    if isinstance(value, FileSpec):
        return value
    if isinstance(value, str):
        return FileSpec(value)
    return FileSpec(*value)
