"""Keep server paths and tracebacks out of answers: texts from Prefect and the steps.

Why: state messages and log lines carry what the flow saw, including local file paths (the
downloads folder, the code, the Python install) and whole Python tracebacks. Clients get the
downloads-relative path or a placeholder, and a traceback becomes its last line (the error)
plus a reference id; the full text is written once to the facade's log under that id, so an
operator can find it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("topup.facade.redact")

TRACEBACK = "Traceback (most recent call last)"
_APP_ROOT = Path(__file__).resolve().parents[1]
_FILE_LINE = re.compile(r'^\s*File "[^"]*", line \d+')

_lock = threading.Lock()
_roots: list[tuple[str, str]] = []
_logged: OrderedDict[str, None] = OrderedDict()
_LOGGED_MAX = 4096


def configure(downloads_dir: Path) -> None:
    """The local directories to hide, longest first (a prefix must not hide a longer one)."""
    pairs = {
        str(downloads_dir.resolve()): "downloads",
        str(downloads_dir): "downloads",
        str(_APP_ROOT): "<app>",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        str(Path.home()): "~",
    }
    with _lock:
        _roots[:] = sorted(
            ((k, v) for k, v in pairs.items() if k not in ("", "/")),
            key=lambda kv: len(kv[0]),
            reverse=True,
        )


def reference(text: str) -> str:
    """A stable id for ``text`` (the same traceback read twice gets the same id)."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:12]


def _paths(text: str) -> str:
    with _lock:
        roots = list(_roots)
    for root, placeholder in roots:
        if root in text:
            text = text.replace(root, placeholder)
    return text


def _summary(text: str) -> str:
    """The text before the traceback, then the exception line (the traceback's last line)."""
    if TRACEBACK in text:
        head, _, tail = text.partition(TRACEBACK)
    else:
        head, tail = "", text
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    # the exception line: the last line that is not a frame or source line
    error = next(
        (ln.strip() for ln in reversed(lines) if not ln.startswith((" ", "\t"))),
        "error",
    )
    error = error.lstrip(":").strip() or "error"
    head = " ".join(head.split())
    return f"{head} {error}".strip() if head and error not in head else (head or error)


def clean(text: str | None) -> str | None:
    """``text`` without local paths; a traceback shortened to its error and a reference."""
    if not text:
        return text
    if TRACEBACK in text or any(_FILE_LINE.match(ln) for ln in text.splitlines()):
        ref = reference(text)
        with _lock:
            first = ref not in _logged
            if first:
                _logged[ref] = None
                while len(_logged) > _LOGGED_MAX:
                    _logged.popitem(last=False)
        if first:
            log.error("traceback ref %s:\n%s", ref, text)
        return f"{_paths(_summary(text))} (details in the server log, ref {ref})"
    return _paths(text)
