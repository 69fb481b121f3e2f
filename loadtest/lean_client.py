"""Lean load clients: Socket.IO v5 / Engine.IO v4 over WebSocket, and Server-Sent Events.

No compression, no reconnection, minimal parsing: they answer pings, record every event's
id and (if the payload has ``ts``, a publish timestamp in seconds) its latency. Thousands
run in one process without the client becoming the bottleneck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class LeanClient:
    """A WebSocket Socket.IO client."""

    url: str
    token: str
    latencies: list[float] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    connect_seconds: float = 0.0
    _task: asyncio.Task[None] | None = None
    _ws: aiohttp.ClientWebSocketResponse | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        ws_url = self.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
        ws = await session.ws_connect(ws_url, compress=0, autoping=False, max_msg_size=0)
        self._ws = ws
        self._task = asyncio.create_task(self._run(ws))
        await asyncio.wait_for(self.connected.wait(), 30)
        self.connect_seconds = time.monotonic() - started

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data: str = message.data
            kind = data[:1]
            if kind == "2":  # engine.io ping
                await ws.send_str("3")
            elif kind == "0":  # engine.io open → socket.io connect with auth
                await ws.send_str("40" + orjson.dumps({"token": self.token}).decode())
            elif data.startswith("40"):
                self.connected.set()
            elif data.startswith("44"):
                raise RuntimeError(f"connect refused: {data}")
            elif data.startswith("42"):
                now = time.time()
                _, payload = orjson.loads(data[2:])[:2]
                self.record(payload, now)
        await ws.close()

    def record(self, payload: Any, now: float) -> None:
        if isinstance(payload, dict) and "eventId" in payload:
            if "ts" in payload:
                self.latencies.append(now - payload["ts"])
            self.event_ids.append(str(payload["eventId"]))

    def abort(self) -> None:
        """Drop the TCP connection at once (a client vanishing, as in a network cut)."""
        if self._ws is not None and self._ws._response.connection is not None:
            self._ws._response.connection.transport.abort()  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


@dataclass
class LeanSSEClient(LeanClient):
    """An EventSource-like client of ``GET /sse`` (realtime only; no Socket.IO)."""

    async def start(self, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        response = await session.get(f"{self.url}/sse", params={"token": self.token},
                                     timeout=aiohttp.ClientTimeout(total=None))
        response.raise_for_status()
        self._task = asyncio.create_task(self._read(response))
        self.connected.set()
        self.connect_seconds = time.monotonic() - started

    async def _read(self, response: aiohttp.ClientResponse) -> None:
        async with response:
            async for line in response.content:
                if line.startswith(b"data: {"):
                    self.record(orjson.loads(line[6:]), time.time())

    def abort(self) -> None:  # pragma: no cover - not used for SSE
        raise NotImplementedError


def client_session() -> aiohttp.ClientSession:
    """A session without aiohttp's default cap of 100 concurrent connections."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@contextlib.contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Keep the load client's cyclic GC out of the measured latencies.

    The clients' growing record lists make full collections take ~100 ms in this process
    (measured with gc.callbacks), which would show up as server latency. The measured
    window is bounded, so collection simply waits until it ends.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
