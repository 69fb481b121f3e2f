"""Per-socket outboxes: prebuilt WebSocket frames, one ``write`` per socket per loop tick.

A broadcast sends the same bytes to N sockets, so a frame is built once and appended to
each recipient's :class:`Outbox`; the :class:`Flusher` writes each outbox's frames to its
transport as one ``transport.write`` at the end of the loop tick. Every frame a socket is
sent — broadcasts, acks, snapshots, pings — goes through its outbox, so they leave in the
order they were sent. A client that does not read is cut off when its transport buffer
passes a limit (it reconnects and resumes from history) instead of growing server memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Flusher:
    """Writes every outbox that received frames during this loop tick, once, at its end."""

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []

    def mark(self, box: Outbox) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self._dirty.append(box)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for box in dirty:
            box.flush()


class Outbox:
    """Frames waiting for one socket's transport; cut off past ``limit`` unsent bytes."""

    __slots__ = ("flusher", "limit", "on_slow", "parts", "transport")

    def __init__(self, transport: asyncio.Transport, flusher: Flusher, limit: int,
                 on_slow: Callable[[Outbox], None]) -> None:
        self.transport = transport
        self.flusher = flusher
        self.limit = limit
        self.on_slow = on_slow
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.parts:
            self.flusher.mark(self)
        self.parts.append(data)

    def flush(self) -> None:
        parts = self.parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.limit:
            self.on_slow(self)
