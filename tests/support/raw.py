"""Raw-socket clients for back-pressure tests: they send a request and never read."""

from __future__ import annotations

import asyncio
import socket


async def open_slow_reader(url: str, request: bytes) -> socket.socket:
    """A socket with a tiny receive buffer that sends ``request`` and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    sock.sendall(request)
    await asyncio.sleep(0.2)
    return sock


def websocket_upgrade(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()


def masked_text_frame(text: str) -> bytes:
    """A client → server text frame (masked, with an all-zero key, as RFC 6455 allows)."""
    payload = text.encode()
    assert len(payload) < 1 << 16
    header = bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    return header + b"\0\0\0\0" + payload
