"""Contract tests for every private name of python-socketio and aiohttp the project touches.

The transport layer owns Engine.IO and hands python-socketio only well-formed packets
(realtime/transport/socketio.py). What it still borrows from python-socketio's and
aiohttp's internals is listed in one place each; these tests fail on an upgrade that
renames, re-signs or removes any of it, instead of the server breaking silently.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import socketio
from aiohttp.web_protocol import RequestHandler
from socketio import async_admin

from realtime.transport import manager
from realtime.transport import socketio as seam
from realtime.transport.engineio import EngineConfig, EngineServer
from realtime.transport.manager import IndexedManager


def test_private_server_methods_exist_with_their_signatures() -> None:
    for name, params in seam.PRIVATE_NAMES.items():
        member = getattr(socketio.AsyncServer, name)
        assert callable(member), name
        assert tuple(inspect.signature(member).parameters)[:len(params)] == params, name


def test_manager_members_exist() -> None:
    stock = socketio.AsyncManager()
    for name in manager.PRIVATE_NAMES:
        assert hasattr(stock, name), name
    assert isinstance(IndexedManager(), socketio.AsyncManager)


def test_the_admin_ui_finds_every_engine_member_it_reads() -> None:
    """python-socketio's Admin UI reads ``sio.eio.<name>``: our engine must have each."""
    source = Path(inspect.getfile(async_admin)).read_text()
    used = set(re.findall(r"self\.sio\.eio\.(\w+)", source)) - {"__ok"}
    engine = EngineServer(EngineConfig())
    missing = [name for name in sorted(used) if not hasattr(engine, name)]
    assert missing == []
    assert used >= {"_get_socket", "_ok", "sockets", "on", "create_event"}


def test_python_socketio_reads_only_what_the_engine_provides() -> None:
    """Every ``self.eio.<name>`` python-socketio's asyncio server uses exists on ours."""
    import socketio.async_server as async_server
    import socketio.base_server as base_server

    used: set[str] = set()
    for module in (async_server, base_server):
        used |= set(re.findall(r"self\.eio\.(\w+)", Path(inspect.getfile(module)).read_text()))
    engine = EngineServer(EngineConfig())
    assert [name for name in sorted(used) if not hasattr(engine, name)] == []


def test_aiohttp_hand_over_members() -> None:
    """``take_over`` unsets the handler's transport and calls ``connection_lost(None)``."""
    assert "transport" in RequestHandler.__slots__ or hasattr(RequestHandler, "transport")
    params = tuple(inspect.signature(RequestHandler.connection_lost).parameters)
    assert params == ("self", "exc")
