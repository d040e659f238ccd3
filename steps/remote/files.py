"""Facts about remote files (size, sha256, mtime) computed on the remote, many per command,
and the local check that a downloaded file is the remote one."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from steps.remote import validate
from steps.remote.validate import qpath

_LINE = re.compile(r"^F\t(\d+)\t(\d+)\t(\d+)\t([0-9a-f]{64})  -$")


class FileFacts(BaseModel):
    """A regular file on the remote as seen at one moment."""

    path: str
    size: int
    sha256: str
    mtime: int | None = None


def facts_script(paths: Sequence[str]) -> str:
    """One command: for each existing regular file, its size, mtime and sha256.

    Each file is hashed from stdin (``sha256sum < f``) so names never appear in the output;
    records are keyed by the index of the path. Missing files produce no record.
    """
    words = " ".join(qpath(validate.path(p)) for p in paths)
    return (
        "__i=0\n"
        f"for __f in {words}; do\n"
        '  if [ -f "$__f" ]; then\n'
        "    printf 'F\\t%d\\t' \"$__i\"\n"
        '    stat -L --printf \'%s\\t%Y\\t\' -- "$__f" && sha256sum < "$__f"\n'
        "    printf '\\n'\n"
        "  fi\n"
        "  __i=$((__i + 1))\n"
        "done\n"
        "exit 0\n"
    )


def parse_facts(paths: Sequence[str], stdout: str) -> dict[str, FileFacts | None]:
    result: dict[str, FileFacts | None] = {p: None for p in paths}
    for line in stdout.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        idx = int(m.group(1))
        if 0 <= idx < len(paths):
            result[paths[idx]] = FileFacts(
                path=paths[idx], size=int(m.group(2)), mtime=int(m.group(3)), sha256=m.group(4)
            )
    return result


def local_facts(path: Path) -> tuple[int, str]:
    """Size and sha256 of a local file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
