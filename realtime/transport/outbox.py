"""Per-socket outboxes: prebuilt WebSocket frames, at most two writes per socket per tick.

A broadcast sends the same bytes to N sockets, so a frame is built once and handed to each
recipient's :class:`Outbox`. The first frame a socket gets in a loop tick is written at once
when its transport has nothing pending (the first recipient is not held for the tick);
frames behind it — a burst, or a transport still busy with an earlier write — are
coalesced, and the :class:`Flusher` writes them as one ``transport.write`` at the end of
the loop tick (a reader that falls behind gets a few large writes, not thousands of small
buffers). Every frame a socket is
sent — broadcasts, acks, snapshots, pings — goes through its outbox, so they leave in the
order they were sent. A client that does not read is cut off when its transport buffer
passes a limit (it reconnects and resumes from history) instead of growing server memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Flusher:
    """Numbers loop ticks (a tick ends when the flusher runs, scheduled by the tick's first
    write) and, at the end of each, writes what the outboxes of the tick coalesced.

    An outbox that wrote at once in this tick needs nothing at its end: it only remembers
    the tick's number, so a steady stream of single frames costs no per-socket flush."""

    __slots__ = ("loop", "pending", "scheduled", "tick")

    def __init__(self) -> None:
        self.tick = 0
        self.scheduled = False
        #: Outboxes holding coalesced frames, each once.
        self.pending: list[Outbox] = []
        #: Asked for once (``asyncio.get_running_loop`` is a ``getpid`` system call).
        self.loop: asyncio.AbstractEventLoop | None = None

    def schedule(self) -> None:
        self.scheduled = True
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        self.tick += 1
        pending, self.pending = self.pending, []
        for box in pending:
            box.flush()


class Outbox:
    """Frames waiting for one socket's transport; cut off past ``limit`` unsent bytes."""

    __slots__ = ("flusher", "limit", "on_slow", "parts", "tick", "transport")

    def __init__(self, transport: asyncio.Transport, flusher: Flusher, limit: int,
                 on_slow: Callable[[Outbox], None]) -> None:
        self.transport = transport
        self.flusher = flusher
        self.limit = limit
        self.on_slow = on_slow
        self.parts: list[bytes] = []
        #: The last tick in which a frame was written or queued here.
        self.tick = -1

    def write(self, data: bytes) -> None:
        flusher = self.flusher
        if self.tick == flusher.tick or self.parts:  # behind a frame of this tick: coalesce
            self._queue(data)
            return
        self.tick = flusher.tick
        if not flusher.scheduled:
            flusher.schedule()
        transport = self.transport
        if transport.get_write_buffer_size():  # behind a pending write: coalesce
            self._queue(data)
        elif not transport.is_closing():
            transport.write(data)
            # From an empty buffer, at most ``data`` can be left unsent.
            if len(data) > self.limit and transport.get_write_buffer_size() > self.limit:
                self.on_slow(self)

    def _queue(self, data: bytes) -> None:
        parts = self.parts
        if not parts:
            self.flusher.pending.append(self)
            if not self.flusher.scheduled:
                self.flusher.schedule()
        parts.append(data)

    def flush(self) -> None:
        """Write what is queued, as one ``write``."""
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
