"""Bounded collection of a command's output.

Transports must drain stdout/stderr while a command runs (or the remote side stalls on
a full window), but a runaway command must not exhaust our memory either: keep the
first ``limit`` bytes, count the rest.
"""

from __future__ import annotations

MAX_OUTPUT_BYTES = 32 * 1024 * 1024


class CappedBuffer:
    """Bytes received so far, up to ``limit``; what does not fit is counted, not kept."""

    def __init__(self, limit: int = MAX_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.dropped = 0
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, data: bytes) -> None:
        room = self.limit - self._size
        if room <= 0:
            self.dropped += len(data)
            return
        if len(data) > room:
            self.dropped += len(data) - room
            data = data[:room]
        self._chunks.append(data)
        self._size += len(data)

    def text(self) -> str:
        """Decoded as UTF-8; undecodable bytes become U+FFFD instead of failing the call."""
        text = b"".join(self._chunks).decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[output truncated: {self.dropped} more bytes not kept]\n"
        return text
