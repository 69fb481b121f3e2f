"""The WebSocket layer that takes Engine.IO sessions over from aiohttp after the handshake.

Raw frames against the real server: the handshake, masked and fragmented messages, pings,
closes, and every kind of bad frame (each closed with its RFC 6455 status code).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest

from support.server import run_server, token

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example: accept is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=


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

    async def closed_with(self) -> int:
        """Read frames until the close frame; return its code; the TCP side must end too."""
        async with asyncio.timeout(5):
            while True:
                opcode, payload = await self.frame()
                if opcode == 0x8:
                    code: int = struct.unpack("!H", payload[:2])[0]
                    assert await self.reader.read() == b""
                    return code


@asynccontextmanager
async def upgraded(url: str, key: str = KEY) -> AsyncIterator[tuple[RawSocket, bytes]]:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    try:
        yield RawSocket(reader, writer), head
    finally:
        writer.close()


async def test_handshake_and_a_fragmented_masked_connect() -> None:
    async with run_server() as srv, upgraded(srv.url) as (ws, head):
        assert head.startswith(b"HTTP/1.1 101")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
        opcode, opened = await ws.frame()
        assert opcode == 0x1 and opened.startswith(b"0{")  # engine.io OPEN
        connect = b"40" + orjson.dumps({"token": token("frag")})
        ws.send(client_frame(0x1, connect[:5], fin=False))
        ws.send(client_frame(0x0, connect[5:20], fin=False))
        ws.send(client_frame(0x9, b"hi"))  # a ping between fragments is allowed
        ws.send(client_frame(0x0, connect[20:]))
        assert await ws.frame() == (0xA, b"hi")
        opcode, answer = await ws.frame()
        assert opcode == 0x1 and answer.startswith(b"40{")


async def test_a_client_close_is_answered() -> None:
    async with run_server() as srv, upgraded(srv.url) as (ws, _):
        await ws.frame()
        ws.send(client_frame(0x8, struct.pack("!H", 1001)))
        assert await ws.closed_with() == 1001


@pytest.mark.parametrize(("bad", "code"), [
    (client_frame(0x1, b"40", masked=False), 1002),  # clients must mask
    (client_frame(0x1, b"\xff\xfe"), 1007),  # not UTF-8
    (client_frame(0x0, b"stray continuation"), 1002),
    (client_frame(0x1, b"", size=50_000_000)[:14], 1009),  # too big: refused from its header
    (bytes((0xC1, 0x82)) + b"\0\0\0\0ab", 1002),  # reserved bit set
    (client_frame(0x9, b"x" * 126), 1002),  # control frames carry at most 125 bytes
])
async def test_bad_frames_close_the_connection_with_their_code(bad: bytes, code: int) -> None:
    async with run_server() as srv, upgraded(srv.url) as (ws, _):
        await ws.frame()
        ws.send(bad)
        assert await ws.closed_with() == code


async def test_an_invalid_upgrade_gets_400() -> None:
    async with run_server() as srv, upgraded(srv.url, key="short") as (_, head):
        assert head.startswith(b"HTTP/1.1 400")
