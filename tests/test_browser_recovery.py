"""Connection-state recovery in a real browser: headless Chromium runs the official
browser bundle of socket.io-client with default options and no recovery code of its own.

The page and the bundle come from a tiny aiohttp app started here (another origin than the
realtime server, as a web app's would be: the server allows it by CORS). The page records
what happens in ``window.log``; the test reads it with ``page.evaluate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from test_recovery import MISSED, ana, publish, ticks

from support.browser import Page, chromium
from support.js_client import JS_DIR
from support.server import free_port, run_server

BUNDLE = JS_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>recovery</title>
<script src="/socket.io.min.js"></script></head>
<body><script>
window.log = [];
const config = %s;
const socket = io(config.server, {auth: {token: config.token}, reconnectionDelay: 1500});
window.socket = socket;
socket.on("connect", () => {
  log.push({type: "connect", id: socket.id, recovered: socket.recovered});
  if (log.filter(e => e.type === "connect").length === 1) {
    socket.emitWithAck("subscribe_order_updates", "o-9")
      .then(response => log.push({type: "ack", response}));
  }
});
socket.on("connect_error", err => log.push({type: "connect_error", message: err.message}));
socket.on("disconnect", reason => log.push({type: "disconnect", reason}));
socket.onAny((event, ...args) => log.push({type: "event", event, args}));
</script></body></html>
"""


@contextlib.asynccontextmanager
async def page_app(port: int, server: str, token: str) -> AsyncIterator[str]:
    """Serve the page and the official bundle on ``port``; yields the page's URL."""
    html = PAGE % json.dumps({"server": server, "token": token})

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def bundle(request: web.Request) -> web.FileResponse:
        return web.FileResponse(BUNDLE)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/socket.io.min.js", bundle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def log_until(page: Page, done: str, limit: float = 20.0) -> list[dict[str, Any]]:
    """``window.log`` once the JavaScript predicate ``done`` (over ``log``) holds."""
    async with asyncio.timeout(limit):
        while not await page.evaluate(f"(log => {done})(window.log || [])"):
            await asyncio.sleep(0.1)
    return list(await page.evaluate("window.log"))


def of(log: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["type"] == kind]


def tick_ids(log: list[dict[str, Any]]) -> list[str]:
    return [e["args"][0]["eventId"] for e in of(log, "event") if e["event"] == "tick"]


TRANSPORT = "window.socket && socket.io.engine && socket.io.engine.transport.name"
TICKS = "log.filter(e => e.type === 'event' && e.event === 'tick').length"


async def websocket(page: Page) -> None:
    """Default options start on polling; wait for the upgrade to WebSocket."""
    async with asyncio.timeout(20):
        while await page.evaluate(TRANSPORT) != "websocket":
            await asyncio.sleep(0.1)


async def test_browser_recovers_a_dropped_transport() -> None:
    port = free_port()  # the page's origin, allowed by the server (CORS, for polling)
    async with run_server(cors_origins=[f"http://127.0.0.1:{port}"]) as srv, \
            page_app(port, srv.url, ana()) as url, chromium(url) as page:

        log = await log_until(page, "log.some(e => e.type === 'ack')")
        [first] = of(log, "connect")
        assert first["recovered"] is False and of(log, "ack")[0]["response"]["ok"] is True, log
        await websocket(page)
        await publish(srv.url, [{**ticks("before", 1)[0], "id": "before"}])
        await log_until(page, f"{TICKS} >= 1")

        await page.evaluate("socket.io.engine.close(), true")
        await log_until(page, "log.some(e => e.type === 'disconnect')")
        await publish(srv.url, ticks("missed", MISSED))  # user, role and order rooms
        assert len(of(await page.evaluate("window.log"), "connect")) == 1, \
            "the client came back before everything was published"
        log = await log_until(page, "log.filter(e => e.type === 'connect').length >= 2", 30)
        again = of(log, "connect")[1]
        assert again["recovered"] is True and again["id"] == first["id"], log
        await publish(srv.url, ticks("live", 3))  # the order room is still joined
        log = await log_until(page, f"{TICKS} >= {1 + MISSED + 3}")
        await asyncio.sleep(0.5)  # anything twice would arrive now
        log = await page.evaluate("window.log")
        assert tick_ids(log) == ["before"] + [f"missed{n}" for n in range(MISSED)] \
            + ["live0", "live1", "live2"]
        last = of(log, "event")[-1]["args"]
        assert last[-1] == last[0]["position"]  # the offset is the last argument
        assert [e["reason"] for e in of(log, "disconnect")] == ["forced close"]  # once
        await websocket(page)  # the recovered session upgrades again
