"""Contract tests for every private name of python-socketio, aiohttp and redis-py the project
touches.

The transport layer owns Engine.IO and hands python-socketio only well-formed packets
(realtime/transport/socketio.py). What it still borrows from python-socketio's and
aiohttp's internals is listed in one place each; these tests fail on an upgrade that
renames, re-signs or removes any of it, instead of the server breaking silently.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import socketio
from aiohttp.web_protocol import RequestHandler
from socketio import async_admin

from realtime.bus.redis import connect
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


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0",
                                 "unix:///tmp/none.sock"])
def test_redis_connections_pack_commands_as_redis_py_does(url: str) -> None:
    """The pool's connection class (redis-py's choice for the URL, a public attribute) packs
    with hiredis, byte for byte what redis-py's own packer writes."""
    client = connect(url)
    packed = client.connection_pool.make_connection()
    stock = packed.__class__.__mro__[2]()  # the class redis-py picked
    assert packed.__class__.__mro__[2] in (aioredis.Connection, aioredis.SSLConnection,
                                           aioredis.UnixDomainSocketConnection)
    for args in [("EVALSHA", "f" * 40, 3, b"k1", "k2", 7, -1, b"\x00\xff", "é", 2.5, 1e20),
                 ("SET", b"key", b"x" * 10_000, "NX", "EX", 600),
                 ("XINFO STREAM", "s"), (b"GET", True)]:
        try:
            expected = b"".join(stock.pack_command(*args))
        except Exception as exc:  # bool: both refuse
            with pytest.raises(type(exc)):
                packed.pack_command(*args)
            continue
        assert b"".join(packed.pack_command(*args)) == expected
