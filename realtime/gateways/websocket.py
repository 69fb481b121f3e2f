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
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket

from realtime.gateways.teardown import ThrottledLoss, drop_tracebacks

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
