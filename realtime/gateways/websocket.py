"""The WebSocket transport under engine.io: prebuilt frames, one write per socket per tick.

engine.io's stock path sends every packet to every recipient through a queue, a writer
task and aiohttp's frame builder (plus permessage-deflate). A broadcast sends the same
bytes to N sockets, so here a frame is built once and appended to each recipient's
:class:`Outbox`; the :class:`Flusher` writes each outbox's frames to its transport as one
``transport.write`` at the end of the loop tick. Every WebSocket write of a socket —
broadcasts, acks, snapshots, engine.io pings — goes through its outbox, so they leave in
the order they were sent. A client that does not read is cut off when its transport
buffer passes a limit (it reconnects and resumes from history) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import gc
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket

if TYPE_CHECKING:
    from realtime.gateways.lean_ws import LeanConnection


def frame(message: str | bytes) -> bytes:
    """One unmasked (server → client) WebSocket frame: text for ``str``, binary for bytes."""
    if isinstance(message, str):
        payload, first = message.encode(), 0x81
    else:
        payload, first = message, 0x82
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


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


class StormFreeze:
    """Keeps CPython's cyclic GC off the heap while a disconnect storm is torn down.

    A full collection over 10,000 live connections takes 0.5-0.9 s here, and teardown
    churn is what triggers one. From ``storm`` closes within a second until ``calm``
    seconds pass without one, the heap is frozen (``gc.freeze``): the collector skips it,
    while reference counting still frees each closed connection (see
    :func:`drop_tracebacks`); ``gc.unfreeze`` then hands back a much smaller heap.
    """

    def __init__(self, storm: int = 200, calm: float = 1.0) -> None:
        self.storm = storm
        self.calm = calm
        self._window_start = 0.0
        self._count = 0
        self._last = 0.0
        self.frozen = False

    def closing(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._last = loop.time()
        if self.frozen:
            return
        if now - self._window_start > 1.0:
            self._window_start, self._count = now, 0
        self._count += 1
        if self._count >= self.storm:
            self.frozen = True
            gc.freeze()
            loop.call_later(self.calm, self._thaw)

    def _thaw(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last
        if quiet < self.calm:
            loop.call_later(self.calm - quiet, self._thaw)
            return
        self.frozen = False
        gc.unfreeze()


class TeardownThrottle:
    """Runs at most ``per_tick`` connection losses per loop iteration.

    When thousands of clients vanish at once, the event loop learns of every lost
    connection in the same iteration; tearing them all down there (aiohttp's close
    handling, engine.io's and Socket.IO's disconnect, room bookkeeping) would stall the
    loop for seconds, health checks and live traffic included. Spreading the losses over
    iterations keeps each one short.
    """

    def __init__(self, per_tick: int = 100) -> None:
        self.per_tick = per_tick
        self.freeze = StormFreeze()
        self._used = 0
        self._queued: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._scheduled = False

    def later(self, callback: Callable[..., object], *args: object) -> None:
        """Call ``callback(*args)`` in this iteration if there is room, else in a later one."""
        self.freeze.closing()
        self._schedule()
        if not self._queued and self._used < self.per_tick:
            self._used += 1
            callback(*args)
        else:
            self._queued.append((callback, args))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_tick)

    def _next_tick(self) -> None:
        self._scheduled = False
        self._used = 0
        while self._queued and self._used < self.per_tick:
            callback, args = self._queued.popleft()
            self._used += 1
            callback(*args)
        if self._used:
            self._schedule()


class ThrottledLoss(asyncio.Protocol):
    """Stands between a transport and aiohttp's protocol; hands connection losses to a
    :class:`TeardownThrottle` and forwards everything else unchanged."""

    def __init__(self, inner: asyncio.Protocol, throttle: TeardownThrottle) -> None:
        self.inner = inner
        self.throttle = throttle

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.throttle.later(self.inner.connection_lost, exc)


def drop_tracebacks(exc: BaseException | None) -> None:
    """Cut an exception chain from its frames.

    aiohttp keeps the error that ended a WebSocket (a write to the closing transport,
    chained to the read's EOF) on the response; its traceback's frames hold the response,
    so every dropped connection would be a reference cycle left for the cyclic GC (~40
    objects each, and a long full collection after a mass disconnect). Without the
    tracebacks, reference counting frees the connection at once.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


class FastWebSocket(WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp WebSocket wrapper, writing through an :class:`Outbox`.

    ``self.server`` is the :class:`~realtime.gateways.engine.FastEngine` that owns it.
    A WebSocket-only session (the usual case) is taken over from aiohttp after the
    handshake (:mod:`realtime.gateways.lean_ws`, ``conn``); an upgrade from long-polling,
    or one with permessage-deflate, stays on aiohttp's WebSocket and engine.io's loop.
    """

    box: Outbox | None = None
    conn: LeanConnection | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.StreamResponse:
        request = environ["aiohttp.request"]
        engine = self.server
        self.environ = environ
        socket = self.handler.__self__  # the engine.io socket this connection belongs to
        if not engine.compress and not socket.connected:
            lean: web.StreamResponse = engine.start_lean_session(socket, self, request)
            return lean
        self._sock = WebSocketResponse(
            max_msg_size=engine.max_http_buffer_size, compress=engine.compress,
            receive_timeout=engine.ping_interval + engine.ping_timeout)
        await self._sock.prepare(request)
        transport = request.transport
        if transport is not None:
            transport.set_protocol(ThrottledLoss(transport.get_protocol(), engine.teardown))
            if not engine.compress:
                self.box = engine.open_outbox(socket, transport)
        try:
            await self.handler(self)
        finally:
            if self.box is not None:
                self.box.flush()
                engine.close_outbox(socket, self.box)
            drop_tracebacks(self._sock.exception())
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if self.box is None:
            await super().send(message)
        else:
            self.box.write(frame(message))

    async def close(self) -> None:
        if self.box is not None:
            self.box.flush()
        if self.conn is not None:
            self.conn.close()
        else:
            await self._sock.close()

    async def wait(self) -> str | bytes:
        if self.conn is not None:
            received = await self.conn.receive()
            if received is None:
                raise OSError("websocket closed")
            return received
        message = await self._sock.receive()
        data = message.data
        if not isinstance(data, (bytes, str)):
            raise OSError("websocket closed")
        return data
