"""Raw WebSocket clients for tests: hand-built frames on a plain TCP connection.

No client library in between, so a test controls every byte it sends (masking,
fragments, bad frames) and sees every frame the server writes, Engine.IO packets
included, down to the close code and the end of the TCP connection.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
#: The Engine.IO endpoint opening a WebSocket-only session.
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 size: int | None = None) -> bytes:
    """A client → server frame, masked with a non-trivial key unless ``masked`` is off."""
    size = len(payload) if size is None else size
    head = bytes((0x80 * fin | opcode,))
    flag = 0x80 if masked else 0
    if size < 126:
        head += bytes((flag | size,))
    elif size < 1 << 16:
        head += bytes((flag | 126,)) + struct.pack("!H", size)
    else:
        head += bytes((flag | 127,)) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = b"\x12\x34\x56\x78"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Closed(Exception):
    """The server sent a close frame where a message was expected."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def frame(self) -> tuple[int, bytes]:
        """The next server frame (opcode, payload); servers never mask."""
        first, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(size)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def send_text(self, text: str) -> None:
        """One Engine.IO packet in one text frame (``"2probe"``, ``"42[...]"``)."""
        self.send(client_frame(TEXT, text.encode()))

    def send_binary(self, data: bytes) -> None:
        """One Engine.IO binary message in one binary frame."""
        self.send(client_frame(BINARY, data))

    async def message(self, timeout: float = 5.0, *, answer_pings: bool = False) -> str | bytes:
        """The next Engine.IO message: ``str`` from a text frame, ``bytes`` from a binary one.

        Raises :class:`Closed` on a close frame. With ``answer_pings``, Engine.IO pings
        (``"2"``) are answered (``"3"``) and skipped."""
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == CLOSE:
                    raise Closed(struct.unpack("!H", payload[:2])[0] if payload else 1005)
                if opcode == BINARY:
                    return payload
                if opcode == TEXT:
                    if answer_pings and payload == b"2":
                        self.send_text("3")
                        continue
                    return payload.decode()

    async def text(self, timeout: float = 5.0, *, answer_pings: bool = False) -> str:
        """The next message, which must be text."""
        data = await self.message(timeout, answer_pings=answer_pings)
        assert isinstance(data, str), data
        return data

    async def handshake(self) -> dict[str, Any]:
        """The Engine.IO open packet (``0{...}``), decoded."""
        opened = await self.text()
        assert opened[:1] == "0", opened
        handshake: dict[str, Any] = orjson.loads(opened[1:])
        return handshake

    async def closed_with(self, timeout: float = 5.0) -> int:
        """Read frames until the close frame; return its code; the TCP side must end too."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await self.message(timeout)
                except Closed as closed:
                    assert await self.reader.read() == b""
                    return closed.code

    async def silent(self, seconds: float = 0.3) -> None:
        """Nothing arrives for ``seconds`` (used before asserting an absence)."""
        try:
            async with asyncio.timeout(seconds):
                data = await self.reader.read(1)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected data from the server: {data!r}")


@asynccontextmanager
async def upgraded(url: str, path: str = WEBSOCKET,
                   key: str = KEY) -> AsyncIterator[tuple[RawSocket, bytes]]:
    """A WebSocket upgrade request to ``path`` (with its query); yields the socket and the
    response head (``HTTP/1.1 101 ...`` or an error status)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    try:
        yield RawSocket(reader, writer), head
    finally:
        writer.close()


@asynccontextmanager
async def opened(url: str,
                 path: str = WEBSOCKET) -> AsyncIterator[tuple[RawSocket, dict[str, Any]]]:
    """An Engine.IO session over WebSocket, past its open packet (yielded, decoded)."""
    async with upgraded(url, path) as (ws, head):
        assert head.startswith(b"HTTP/1.1 101"), head
        yield ws, await ws.handshake()
