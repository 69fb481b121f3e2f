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
