"""A client WebSocket after the handshake: the codec on an asyncio transport.

aiohttp would keep its request handler, the parsed upgrade request and a WebSocket
response with its reader and writer alive for the whole life of a WebSocket (~9 KB of an
idle connection's ~26 KB, by tracemalloc). A push connection mostly idles, so the
handshake is answered here and the transport handed to a :class:`WebSocketConnection`:
the sans-I/O codec (:mod:`realtime.transport.websocket`) for what the client sends, an
:class:`~realtime.transport.outbox.Outbox` for what it is sent. aiohttp is told the
connection is gone and its handler returns at once (:func:`take_over`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from realtime.transport.outbox import Flusher, Outbox
from realtime.transport.teardown import TeardownThrottle
from realtime.transport.websocket import (
    Close,
    CloseCode,
    Message,
    Ping,
    ProtocolError,
    Reader,
    close_frame,
    close_reply,
    handshake_response,
    pong_frame,
)

#: Called with each whole client message.
OnMessage = Callable[[str | bytes], None]
#: Called once when the connection has ended (either side).
OnEnd = Callable[[], None]


def _ignore_message(_: str | bytes) -> None:
    return None


def _ignore_end() -> None:
    return None


class Detached(web.StreamResponse):
    """What the aiohttp handler returns for a connection it no longer owns: writes nothing."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class WebSocketConnection(asyncio.Protocol):
    """Reads client frames through the codec and writes server frames through an outbox.

    Pings are answered, a client close is answered and ends the connection, a protocol
    violation is closed with its RFC 6455 code. ``on_message`` / ``on_end`` are set by
    the owner (the Engine.IO session, or an upgrade probe before it)."""

    def __init__(self, transport: asyncio.Transport, max_message: int, flusher: Flusher,
                 buffer_limit: int, on_slow: Callable[[Outbox], None],
                 throttle: TeardownThrottle) -> None:
        self.transport = transport
        self.reader = Reader(max_message)
        self.outbox = Outbox(transport, flusher, buffer_limit, on_slow)
        self.throttle = throttle
        self.on_message: OnMessage = _ignore_message
        self.on_end: OnEnd = _ignore_end
        self.error: str | None = None
        self.ended = False

    def send(self, frame: bytes) -> None:
        if not self.ended:
            self.outbox.write(frame)

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        error: ProtocolError | None = None
        try:
            events = self.reader.feed(data)
        except ProtocolError as exc:
            events, error = exc.events, exc
        for event in events:
            if self.ended:
                return
            if isinstance(event, Message):
                self.on_message(event.data)
            elif isinstance(event, Ping):
                self.send(pong_frame(event.payload))
            elif isinstance(event, Close):
                self._finish(close_reply(event))
        if error is not None:
            self.error = f"websocket {error.code}: {error.reason}"
            self.close(error.code)

    def close(self, code: int | None = CloseCode.NORMAL) -> None:
        """Send what is queued, then a close frame, and end (idempotent)."""
        if not self.ended:
            self._finish(close_frame(code))

    def _finish(self, last_frame: bytes) -> None:
        self.outbox.flush()
        if not self.transport.is_closing():
            self.transport.write(last_frame)
            self.transport.close()
        self._end()

    def abort(self) -> None:
        self.transport.abort()
        self._end()

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            on_end, self.on_end, self.on_message = self.on_end, _ignore_end, _ignore_message
            on_end()

    def pause(self) -> None:
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.throttle.later(self._end)


def take_over(request: web.BaseRequest,
              connect: Callable[[asyncio.Transport], WebSocketConnection],
              ) -> tuple[web.StreamResponse, WebSocketConnection | None]:
    """Answer a WebSocket upgrade and take its transport from aiohttp.

    Returns what the aiohttp handler must return — a plain 400 for an invalid upgrade,
    else a :class:`Detached` response — and the connection ``connect`` built for the
    transport. aiohttp's protocol is told the connection is lost (with no error) after
    its transport was unset, so it forgets the request without closing the socket."""
    answer = handshake_response(request.headers)
    transport: Any = request.transport  # asyncio's or uvloop's
    if answer is None or transport is None:
        return web.Response(status=400, text="invalid WebSocket upgrade"), None
    aiohttp_protocol = transport.get_protocol()
    connection = connect(transport)
    transport.set_protocol(connection)
    transport.write(answer)
    aiohttp_protocol.transport = None
    aiohttp_protocol.connection_lost(None)
    return Detached(), connection
