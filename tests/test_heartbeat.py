"""Engine.IO heartbeats on the lean WebSocket path: pings are timers, not a task per socket.

A client that answers pings stays connected; one that stops answering is disconnected
after ``REALTIME_PING_INTERVAL`` + ``REALTIME_PING_TIMEOUT``, and its rooms are released.
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from support.server import run_server, token


async def session_of(url: str, sub: str, session: aiohttp.ClientSession,
                     answer_pings: bool) -> tuple[aiohttp.ClientWebSocketResponse, list[str]]:
    ws = await session.ws_connect(url.replace("http", "ws", 1)
                                  + "/socket.io/?EIO=4&transport=websocket")
    seen: list[str] = []

    async def read() -> None:
        async for message in ws:
            seen.append(message.data)
            if message.data == "2" and answer_pings:
                await ws.send_str("3")
            elif message.data.startswith("0"):
                await ws.send_str("40" + orjson.dumps({"token": token(sub)}).decode())

    _readers.add(asyncio.create_task(read()))
    return ws, seen


_readers: set[asyncio.Task[None]] = set()


async def test_pings_keep_live_clients_and_drop_silent_ones() -> None:
    async with run_server(ping_interval=0.4, ping_timeout=0.4) as srv, \
            aiohttp.ClientSession() as session:
        live, live_seen = await session_of(srv.url, "live", session, answer_pings=True)
        silent, silent_seen = await session_of(srv.url, "silent", session, answer_pings=False)
        async with asyncio.timeout(10):
            while not silent.closed:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert not live.closed
        assert live_seen.count("2") >= 3  # pinged every interval, answered each time
        assert silent_seen.count("2") == 1  # pinged once, never answered, then dropped
        status, _ = await srv.publish({"id": "hb", "type": "PUSH", "event": "tick",
                                       "rooms": ["user:live", "user:silent"], "data": {}})
        assert status == 202
        async with asyncio.timeout(5):
            while not any(m.startswith('42["tick"') for m in live_seen):
                await asyncio.sleep(0.05)
        await live.close()
        for reader in _readers:
            reader.cancel()
