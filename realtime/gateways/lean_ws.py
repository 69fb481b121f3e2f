"""WebSocket connections taken over from aiohttp right after the handshake.

aiohttp keeps its request handler, the parsed upgrade request and a WebSocket response with
its reader and writer alive for the whole life of a WebSocket: about 9 KB of an idle
connection's ~26 KB (tracemalloc). A push connection mostly idles, so for WebSocket-only
Engine.IO sessions the handshake is answered here, the transport is handed to a
:class:`LeanConnection` (a small protocol that reads client frames), aiohttp is told the
connection is gone, and its handler returns at once. Server → client frames keep going
through the socket's :class:`~realtime.gateways.websocket.Outbox`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from typing import Any

from aiohttp import web

from realtime.gateways.teardown import TeardownThrottle

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Client messages queued unread before the connection stops reading (back-pressure).
MAX_QUEUED = 64


def handshake(request: web.BaseRequest) -> bytes | None:
    """The ``101 Switching Protocols`` answer to a valid WebSocket upgrade, else ``None``."""
    headers = request.headers
    key = headers.get("Sec-WebSocket-Key", "")
    if (headers.get("Upgrade", "").lower() != "websocket"
            or "upgrade" not in headers.get("Connection", "").lower()
            or headers.get("Sec-WebSocket-Version") != "13" or len(key) != 24):
        return None
    accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode()


class Detached(web.StreamResponse):
    """What the aiohttp handler returns for a connection it no longer owns: writes nothing."""

    async def prepare(self, request: web.BaseRequest) -> Any:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


def take_over(request: web.BaseRequest, max_size: int,
              throttle: TeardownThrottle) -> LeanConnection | None:
    """Answer the upgrade and take the transport from aiohttp (``None``: not a valid one)."""
    answer = handshake(request)
    transport: Any = request.transport  # asyncio's or uvloop's
    if answer is None or transport is None:
        return None
    aiohttp_protocol = transport.get_protocol()
    connection = LeanConnection(transport, max_size, throttle)
    transport.set_protocol(connection)
    transport.write(answer)
    # aiohttp forgets the connection (its registry, parser and handler) without closing it.
    aiohttp_protocol.transport = None
    aiohttp_protocol.connection_lost(None)
    return connection


def _unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


def close_frame(code: int) -> bytes:
    return b"\x88\x02" + struct.pack("!H", code)


class LeanConnection(asyncio.Protocol):
    """Reads a client's WebSocket frames (RFC 6455: masked, possibly fragmented) into
    messages; answers pings and closes; ``None`` marks the end of the connection."""

    def __init__(self, transport: asyncio.Transport, max_size: int,
                 throttle: TeardownThrottle) -> None:
        self.transport = transport
        self.max_size = max_size
        self.throttle = throttle
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._messages: list[str | bytes | None] = []
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.ended = False

    # --- reading ------------------------------------------------------------------------

    async def receive(self) -> str | bytes | None:
        """The next client message, or ``None`` once the connection has ended."""
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._messages.pop(0)
        if message is None:
            self._messages.append(None)  # the end stays the end
        elif self._paused and len(self._messages) < MAX_QUEUED // 2:
            self._paused = False
            self.transport.resume_reading()
        return message

    def _push(self, message: str | bytes | None) -> None:
        if self.ended:
            return
        self.ended = message is None
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if not self.ended and len(self._messages) >= MAX_QUEUED and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while not self.ended and len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = struct.unpack_from("!H", buffer, 2)[0], 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = struct.unpack_from("!Q", buffer, 2)[0], 10
            if first & 0x70 or not second & 0x80:  # reserved bits, or an unmasked frame
                return self.close(1002)
            if size > self.max_size:
                return self.close(1009)
            end = start + 4 + size
            if len(buffer) < end:
                return
            payload = _unmask(bytes(buffer[start + 4:end]), bytes(buffer[start:start + 4]))
            del buffer[:end]
            self._frame(bool(first & 0x80), first & 0x0F, payload)

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode & 0x8 and (not fin or len(payload) > 125):  # control frames are small, whole
            self.close(1002)
        elif opcode == 0x8:  # close: answer it and end
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1000
            self.close(code if 1000 <= code < 5000 else 1000)
        elif opcode == 0x9:  # ping
            self.transport.write(b"\x8a" + bytes((len(payload),)) + payload)
        elif opcode == 0xA:  # pong
            pass
        elif opcode in (0x1, 0x2) and not self._fragments:
            if fin:
                self._message(opcode, payload)
            else:
                self._fragment_opcode, self._fragments = opcode, [payload]
        elif opcode == 0x0 and self._fragments:
            self._fragments.append(payload)
            if sum(map(len, self._fragments)) > self.max_size:
                self.close(1009)
            elif fin:
                joined, self._fragments = b"".join(self._fragments), []
                self._message(self._fragment_opcode, joined)
        else:
            self.close(1002)

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x2:
            self._push(payload)
            return
        try:
            self._push(payload.decode())
        except UnicodeDecodeError:
            self.close(1007)

    # --- ending -------------------------------------------------------------------------

    def close(self, code: int = 1000) -> None:
        """Send a close frame and end: normal (1000), or for a protocol violation (1002),
        bad UTF-8 (1007) or a too-big message (1009)."""
        if not self.transport.is_closing():
            self.transport.write(close_frame(code))
            self.transport.close()
        self._push(None)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.throttle.later(self._push, None)
