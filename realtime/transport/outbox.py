"""Per-socket outboxes: prebuilt WebSocket frames, at most two writes per socket per tick.

A broadcast sends the same bytes to N sockets, so a frame is built once and handed to each
recipient's :class:`Outbox`. The first frame a socket gets in a loop tick is written at once
when its transport has nothing pending (the first recipient is not held for the tick);
frames behind it — a burst, or a transport still busy with an earlier write — are
coalesced, and the :class:`Flusher` writes them as one ``transport.write`` at the end of
the loop tick. Every frame a socket is
sent — broadcasts, acks, snapshots, pings — goes through its outbox, so they leave in the
order they were sent. A client that does not read is cut off when its transport buffer
passes a limit (it reconnects and resumes from history) instead of growing server memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Flusher:
    """At the end of the loop tick, writes what every outbox used in the tick coalesced."""

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

    __slots__ = ("flusher", "limit", "marked", "on_slow", "parts", "transport")

    def __init__(self, transport: asyncio.Transport, flusher: Flusher, limit: int,
                 on_slow: Callable[[Outbox], None]) -> None:
        self.transport = transport
        self.flusher = flusher
        self.limit = limit
        self.on_slow = on_slow
        self.parts: list[bytes] = []
        #: Handed to the flusher for this tick (a frame went out or waits).
        self.marked = False

    def write(self, data: bytes) -> None:
        if self.marked:  # behind a frame of this tick: coalesce
            self.parts.append(data)
            return
        self.marked = True
        self.flusher.mark(self)
        if self.transport.get_write_buffer_size():  # behind a pending write: coalesce
            self.parts.append(data)
        else:
            self._send(data)

    def flush(self) -> None:
        self.marked = False
        parts = self.parts
        if not parts:
            return
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self._send(data)

    def _send(self, data: bytes) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.limit:
            self.on_slow(self)
