"""Socket.IO Admin UI: off by default; with credentials configured, only they get in."""

from __future__ import annotations

import pytest
import socketio

from support.server import run_server


async def _admin_connect(url: str, auth: dict[str, str]) -> None:
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(url, namespaces=["/admin"], auth=auth, transports=["websocket"],
                             wait_timeout=5)
    finally:
        await client.disconnect()


async def test_admin_ui_needs_its_credentials() -> None:
    async with run_server(admin_ui_username="ops", admin_ui_password="s3cret-pass") as srv:
        await _admin_connect(srv.url, {"username": "ops", "password": "s3cret-pass"})
        with pytest.raises(socketio.exceptions.ConnectionError):
            await _admin_connect(srv.url, {"username": "ops", "password": "wrong"})


async def test_admin_ui_is_off_by_default() -> None:
    async with run_server() as srv:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await _admin_connect(srv.url, {"username": "ops", "password": "x"})


async def test_failed_admin_logins_are_slowed_capped_and_closed() -> None:
    """Password guessing: each failure takes the guard's delay and ends the connection;
    past the per-client cap even the right password is refused."""
    import asyncio
    import json
    import time

    import aiohttp

    async with run_server(admin_ui_username="ops", admin_ui_password="s3cret-pass") as srv:
        guard_delay = 1.0
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                srv.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket")
            assert (await ws.receive_str()).startswith("0")
            started = time.monotonic()
            for guess in range(3):
                login = {"username": "ops", "password": f"guess{guess}"}
                await ws.send_str("40/admin," + json.dumps(login))
            answer = await ws.receive_str()
            assert answer.startswith("44/admin,")
            assert time.monotonic() - started >= guard_delay * 0.9
            async with asyncio.timeout(3):
                while not ws.closed:  # the connection is closed after the failure
                    await ws.receive()
        for guess in range(5):
            with pytest.raises(socketio.exceptions.ConnectionError):
                await _admin_connect(srv.url, {"username": "ops", "password": f"g{guess}"})
        with pytest.raises(socketio.exceptions.ConnectionError):
            await _admin_connect(srv.url, {"username": "ops", "password": "s3cret-pass"})
