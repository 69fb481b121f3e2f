"""The WebSocket layer that takes Engine.IO sessions over from aiohttp after the handshake.

Raw frames against the real server: the handshake, masked and fragmented messages, pings,
closes, and every kind of bad frame (each closed with its RFC 6455 status code).
"""

from __future__ import annotations

import struct

import orjson
import pytest

from support.server import run_server, token
from support.ws import client_frame, upgraded


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
