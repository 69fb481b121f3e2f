"""Every HTTP error is the error JSON, including unknown paths and wrong methods; the
Engine.IO transport's own answers and the entry point ``/`` keep working."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_http_publish import assert_error

from realtime.http.errors import error_middleware
from support.server import free_port, run_server


async def request(method: str, url: str, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.request(
            method, url, allow_redirects=False, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" \
            else await response.text()
        return response.status, body, dict(response.headers)


@pytest.mark.parametrize("method, path", [
    ("GET", "/nope"), ("POST", "/api/v1/nope"), ("GET", "/api/v1/rooms"),
    ("GET", "/socket.io"), ("DELETE", "/demo/x"),
])
async def test_unknown_paths_are_404_error_json(method: str, path: str) -> None:
    async with run_server() as srv:
        status, body, _ = await request(method, f"{srv.url}{path}")
    assert status == 404
    assert_error(body, "not_found")
    assert body["error"]["details"] == {"method": method, "path": path}


@pytest.mark.parametrize("method, path, allowed", [
    ("POST", "/healthz", ["GET", "HEAD"]),
    ("DELETE", "/api/v1/publish", ["POST"]),
    ("GET", "/api/v1/publish", ["POST"]),
    ("PUT", "/sse", ["GET", "HEAD", "OPTIONS"]),
])
async def test_wrong_methods_are_405_error_json_with_allow(method: str, path: str,
                                                           allowed: list[str]) -> None:
    async with run_server() as srv:
        status, body, headers = await request(method, f"{srv.url}{path}")
    assert status == 405
    assert_error(body, "method_not_allowed")
    assert body["error"]["details"]["allowed"] == allowed
    assert sorted(headers["Allow"].split(",")) == allowed


async def test_socketio_and_sse_answers_are_their_own() -> None:
    async with run_server() as srv:
        # The transport's protocol errors stay as Engine.IO clients expect them.
        status, body, _ = await request("GET", f"{srv.url}/socket.io/?EIO=3&transport=polling")
        assert (status, body) == (400, {"code": 5, "message": "Unsupported protocol version"})
        status, body, _ = await request("GET", f"{srv.url}/socket.io/?EIO=4&transport=polling")
        assert status == 200 and body.startswith('0{"sid":')
        status, body, _ = await request("GET", f"{srv.url}/sse")
        assert status == 401
        assert_error(body, "invalid_token")


async def test_root_redirects_to_the_demo_and_lists_the_entry_points() -> None:
    async with run_server() as srv:
        status, body, headers = await request("GET", f"{srv.url}/")
        assert status == 302 and headers["Location"] == "/demo"
        assert body["demo"] == "/demo" and body["openapi"] == "/api/v1/openapi.json"
        async with aiohttp.ClientSession() as session, session.get(f"{srv.url}/") as response:
            assert response.status == 200 and str(response.url).endswith("/demo")
            assert "<title>realtime" in await response.text()


async def test_an_unexpected_exception_is_a_500_error_json() -> None:
    async def broken(_: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, body, _ = await request("GET", f"http://127.0.0.1:{port}/broken")
    finally:
        await runner.cleanup()
    assert status == 500
    assert_error(body, "internal_error")
    assert "bug" not in body["error"]["message"]  # no internals leak to clients
