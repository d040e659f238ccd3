"""The legacy JSON conventions: sorted keys, ASCII-escaped text, naive-UTC timestamps.

Why: existing clients (the notebook decodes with json.loads and compares strings) were written
against Flask 3 output; keeping the byte-level conventions costs nothing and avoids surprises.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse


def iso(value: datetime | None) -> str | None:
    """ISO-8601, naive UTC, always with microseconds (``2026-03-07T08:39:46.952644``)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        utc = value.astimezone(UTC)
        # Rebuilt as a plain datetime: Prefect hands out pendulum subclasses.
        value = datetime(*utc.timetuple()[:6], utc.microsecond)
    return value.isoformat(timespec="microseconds")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


class LegacyJSONResponse(JSONResponse):
    """JSON with sorted keys and ``\\uXXXX`` escapes, like the Flask service."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=_default
        ).encode("ascii")
