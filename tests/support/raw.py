"""Raw-socket clients for back-pressure tests: they send a request and never read."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from support.server import ServerProcess, publish_to


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


async def flood(url: str, room: str, after_batch: Callable[[], object] = lambda: None,
                received: Callable[[], int] | None = None) -> None:
    """Publish 60 x 100 events of ~4 KB (24 MB) to ``room``: far more than a 1 MB buffer.

    ``received`` (a healthy reader's count so far) paces the flood to that reader: a batch
    goes out once it has the one before last, so it never has more than two batches
    (~800 KB) in flight however fast the server is, while a reader that reads nothing
    falls behind by all of them."""
    blob = "x" * 4000
    for batch in range(60):
        if received is not None:
            async with asyncio.timeout(30):
                while received() < (batch - 1) * 100:
                    await asyncio.sleep(0.005)
        status, _ = await publish_to(url, [
            {"id": f"b{batch}-{n}", "type": "PUSH", "event": "tick",
             "rooms": [room], "data": {"n": batch * 100 + n, "blob": blob}}
            for n in range(100)])
        assert status == 202
        after_batch()


async def flood_target(buffer_setting: str) -> ServerProcess:
    """A server with a 1 MB per-client buffer (``buffer_setting``), no publish rate limit."""
    server = await ServerProcess({buffer_setting: str(1024 * 1024),
                                  "REALTIME_PUBLISH_RATE_PER_SECOND": "1000000",
                                  "REALTIME_PUBLISH_BURST": "1000000"}).start()
    assert server.proc is not None
    return server
