"""What a WebSocket connection leaves behind: no reference cycles, no credentials.

A dropped connection must be freed by reference counting: aiohttp keeps the error that
ended the socket on its response, and that error's traceback would otherwise tie the
whole connection into a cycle only a full GC collection reclaims (slow with many live
connections). The request environment kept per connection must not hold the token.
"""

from __future__ import annotations

import asyncio
import gc

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from loadtest.lean_client import LeanClient, client_session
from realtime.transport.connection import WebSocketConnection
from realtime.transport.engineio import EngineSocket
from support.server import run_server, token


async def test_dropped_websockets_leave_no_reference_cycles() -> None:
    async with run_server() as srv, client_session() as session:
        clients = [LeanClient(srv.url, token(f"u{i}")) for i in range(20)]
        await asyncio.gather(*(c.start(session) for c in clients))
        gateway = srv.server.socketio
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for client in clients:
                client.abort()
            async with asyncio.timeout(10):
                while gateway.connections:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            gc.collect()
            leaked = [o for o in gc.garbage if isinstance(
                o, (web.WebSocketResponse, RequestHandler, WebSocketConnection, EngineSocket))]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            for client in clients:
                await client.stop()
        assert leaked == []


async def test_the_kept_request_environment_holds_no_credentials() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            srv.url.replace("http", "ws", 1)
            + f"/socket.io/?EIO=4&transport=websocket&token={token('q')}",
            headers={"Authorization": f"Bearer {token('q')}", "Cookie": "a=b",
                     "User-Agent": "probe/1"})
        assert (await ws.receive_str()).startswith("0")
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith("40")
        (environ,) = srv.server.socketio.sio.environ.values()
        assert environ.get("HTTP_USER_AGENT") == "probe/1"
        assert not any(token("q") in str(v) for v in environ.values())
        assert "HTTP_COOKIE" not in environ and "QUERY_STRING" not in environ
        await ws.close()
