"""Socket.IO v5 as its protocol document (``socketio/socket.io-protocol``) states it, case by case.

Raw WebSocket frames (and long-polling where the transport matters) against the real
server. Our application stands in for the document's echo server: CONNECT to ``/``
carries the token (or the client authenticates later with ``authenticate``), known events
answer through their ack, unknown ones get an ``error`` event or a refusal ack. A packet
that breaks the protocol closes that connection only, with one log line and no traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
import pytest

from support.logs import json_lines
from support.packets import CONNECTED, connect_packet, refusal
from support.polling import Polling
from support.server import Running, run_server, token
from support.ws import RawSocket, opened

#: An event of ours (needs an authenticated socket) and its answer.
UNSUBSCRIBE = '["unsubscribe_order_updates","o1"]'
UNSUBSCRIBED = '[{"ok":true,"orderId":"o1"}]'
PLACEHOLDER = '{"_placeholder":true,"num":%d}'


def connections(srv: Running) -> tuple[int, int]:
    """(Engine.IO sessions, gateway connections) the server holds."""
    gateway = srv.server.socketio
    return len(gateway.sio.engine.sockets), len(gateway.connections)


@asynccontextmanager
async def client(srv: Running, sub: str = "alice") -> AsyncIterator[RawSocket]:
    """A raw WebSocket connected to ``/`` with a token for ``sub``."""
    async with opened(srv.url) as (ws, _):
        ws.send_text(connect_packet(token(sub)))
        assert CONNECTED.fullmatch(await ws.text())
        yield ws


async def works(ws: RawSocket, ack: int = 1) -> None:
    """The connection still answers an event of ours."""
    ws.send_text(f"42{ack}{UNSUBSCRIBE}")
    assert await ws.text() == f"43{ack}{UNSUBSCRIBED}"


# --- CONNECT ---------------------------------------------------------------------------


async def test_connect_with_a_token() -> None:
    async with run_server() as srv, opened(srv.url) as (ws, handshake):
        ws.send_text(connect_packet(token()))
        answer = await ws.text()
        assert CONNECTED.fullmatch(answer), answer
        # pid: the private session id of connection-state recovery (on by default)
        assert orjson.loads(answer[2:]).keys() == {"sid", "pid"}
        assert orjson.loads(answer[2:])["sid"] != handshake["sid"]  # not the Engine.IO sid
        await works(ws)
        assert connections(srv) == (1, 1)


async def test_connect_over_polling_as_in_the_sample_session() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = Polling(http, srv.url)
        await poll.open()
        await poll.send(connect_packet(token()))
        (answer,) = await poll.packets(1)
        assert CONNECTED.fullmatch(answer), answer
        await poll.send(f"421{UNSUBSCRIBE}", '42["hello"]', '42["world"]')
        assert sorted(await poll.packets(3)) == sorted(
            [f"431{UNSUBSCRIBED}", refusal("hello"), refusal("world")])


async def test_connect_without_a_token_then_authenticate() -> None:
    """The compatibility flow: connected, but nothing is allowed until ``authenticate``."""
    async with run_server(auth_timeout=1) as srv, opened(srv.url) as (ws, _):
        ws.send_text("40")
        assert CONNECTED.fullmatch(await ws.text())
        ws.send_text(f"421{UNSUBSCRIBE}")
        assert await ws.text() == refusal("unsubscribe_order_updates", 1, "unauthenticated",
                                          "authenticate first")
        ws.send_text('422["authenticate",' + orjson.dumps({"token": token()}).decode() + "]")
        assert await ws.text() == '42["authenticated",{"userId":"alice"}]'
        assert await ws.text() == '432[{"ok":true,"userId":"alice"}]'
        await asyncio.sleep(1.3)  # past the auth timeout: it no longer applies
        await works(ws, ack=3)
        assert connections(srv) == (1, 1)


async def test_connect_without_a_token_and_no_authenticate_is_closed() -> None:
    async with run_server(auth_timeout=1) as srv, opened(srv.url) as (ws, _):
        started = time.monotonic()
        ws.send_text("40")
        assert CONNECTED.fullmatch(await ws.text())
        assert await ws.text() == ('42["auth_error",{"message":"authentication timed out",'
                                   '"code":"invalid_token"}]')
        assert await ws.text() == "41"  # DISCONNECT from "/"
        assert await ws.closed_with() == 1000  # and the connection ends with it
        assert 0.9 < time.monotonic() - started < 2.0
        assert connections(srv) == (0, 0)


@pytest.mark.parametrize(("credential", "message", "code"), [
    ("bad", "malformed token", "invalid_token"),
    (token(ttl=-60), "token has expired", "expired"),
    (token(secret="another-secret-0123456789abcdef0123"), None, "invalid_token"),
], ids=["malformed", "expired", "wrong-key"])
async def test_connect_with_a_bad_token_gets_connect_error(
        credential: str, message: str | None, code: str) -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        ws.send_text(connect_packet(credential))
        answer = await ws.text()
        assert answer[:2] == "44", answer
        error = orjson.loads(answer[2:])
        assert error.keys() == {"message", "data"}
        assert isinstance(error["message"], str) and error["message"]
        if message is not None:
            assert error["message"] == message
        assert error["data"] == {"code": code}
        assert connections(srv) == (1, 0)
        ws.send_text(connect_packet(token()))  # the client may try again on the same session
        assert CONNECTED.fullmatch(await ws.text())
        await works(ws)


async def test_repeatedly_refused_connects_close_the_connection() -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        for _ in range(3):
            ws.send_text(connect_packet("bad"))
            assert await ws.text() == (
                '44{"message":"malformed token","data":{"code":"invalid_token"}}')
        assert await ws.closed_with() == 1008
        assert connections(srv) == (0, 0)


@pytest.mark.parametrize(("packet", "answer"), [
    ("40/ns,", '44/ns,{"message":"Invalid namespace"}'),
    ("40/random", '44/random,{"message":"Invalid namespace"}'),
    ('40/admin,{"token":"x"}', '44/admin,{"message":"Invalid namespace"}'),
])
async def test_connect_to_an_unknown_namespace_gets_connect_error(packet: str,
                                                                  answer: str) -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        ws.send_text(packet)
        assert await ws.text() == answer
        ws.send_text(connect_packet(token()))  # the session stays usable
        assert CONNECTED.fullmatch(await ws.text())


async def test_no_connect_closes_the_websocket_after_the_auth_timeout() -> None:
    async with run_server(auth_timeout=1) as srv, opened(srv.url) as (ws, _):
        started = time.monotonic()
        assert await ws.closed_with(timeout=3) == 1008  # and the TCP connection ends
        assert 0.7 < time.monotonic() - started < 2.0
        assert connections(srv) == (0, 0)


async def test_no_connect_closes_the_polling_session_after_the_auth_timeout() -> None:
    async with run_server(auth_timeout=1) as srv, aiohttp.ClientSession() as http:
        poll = Polling(http, srv.url)
        await poll.open()
        started = time.monotonic()
        answer = await poll.get(timeout=3)
        assert (answer.status, answer.body) == (200, "1")
        assert 0.7 < time.monotonic() - started < 2.0
        assert (await poll.get()).status == 400
        assert connections(srv) == (0, 0)


# --- DISCONNECT ------------------------------------------------------------------------


async def test_disconnect_from_the_main_namespace_keeps_the_session() -> None:
    async with run_server(ping_interval=0.3, ping_timeout=1) as srv, client(srv) as ws:
        ws.send_text("41")
        assert await ws.message() == "2"  # no answer; the Engine.IO session goes on
        ws.send_text("3")
        assert connections(srv) == (1, 0)
        ws.send_text(connect_packet(token()))
        assert CONNECTED.fullmatch(await ws.text(answer_pings=True))
        ws.send_text(f"421{UNSUBSCRIBE}")
        assert await ws.text(answer_pings=True) == f"431{UNSUBSCRIBED}"


async def test_a_session_that_left_every_namespace_is_closed_after_the_auth_timeout() -> None:
    async with run_server(auth_timeout=1) as srv, client(srv) as ws:
        await asyncio.sleep(1.2)  # past the first deadline: CONNECT came in time
        ws.send_text("41")
        started = time.monotonic()
        assert await ws.closed_with(timeout=3) == 1008
        assert 0.7 < time.monotonic() - started < 2.0
        assert connections(srv) == (0, 0)


# --- EVENT and ACK ---------------------------------------------------------------------


async def test_events_with_and_without_ack() -> None:
    async with run_server() as srv, client(srv) as ws:
        ws.send_text(f"42456{UNSUBSCRIBE}")
        assert await ws.text() == f"43456{UNSUBSCRIBED}"
        ws.send_text(f"42{UNSUBSCRIBE}")  # no ack asked: nothing comes back
        await ws.silent()
        ws.send_text('42["nope",{"a":1}]')
        assert await ws.text() == refusal("nope")
        ws.send_text('4212["nope",1,"2",{"3":[false]}]')
        assert await ws.text() == refusal("nope", 12)


@pytest.mark.parametrize("name", ["connect", "disconnect", "disconnecting", "connect_error",
                                  "*", "message", "newListener"])
async def test_reserved_event_names_are_refused_like_unknown_ones(name: str) -> None:
    async with run_server() as srv, client(srv) as ws:
        payload = orjson.dumps([name, {"sid": "x"}]).decode()
        ws.send_text(f"42{payload}")
        assert await ws.text() == refusal(name)
        ws.send_text(f"427{payload}")
        assert await ws.text() == refusal(name, 7)
        await works(ws)
        assert connections(srv) == (1, 1)


async def test_binary_events_are_consumed_whole_and_refused() -> None:
    async with run_server() as srv, client(srv) as ws:
        ws.send_text(f'452-789["nope",{PLACEHOLDER % 0},{PLACEHOLDER % 1}]')
        ws.send_binary(b"\x01\x02\x03")
        ws.send_binary(b"\x04\x05\x06")
        assert await ws.text() == refusal("nope", 789)
        ws.send_text(f'451-["nope2",{{"file":{PLACEHOLDER % 0}}}]')
        ws.send_binary(b"\x00" * 1000)
        assert await ws.text() == refusal("nope2")
        await works(ws)  # the attachments were not taken for packets


async def test_an_ack_for_nothing_gets_no_reply(server_log: pytest.LogCaptureFixture) -> None:
    async with run_server() as srv, client(srv) as ws:
        server_log.clear()
        ws.send_text('431["stray"]')
        ws.send_text(f"461-5[{PLACEHOLDER % 0}]")
        ws.send_binary(b"\x01")
        await ws.silent()
        assert json_lines(server_log) == []  # dropped without a word
        await works(ws)


# --- invalid packets -------------------------------------------------------------------

BINARY_NOPE = f'451-["nope",{PLACEHOLDER % 0}]'
#: name: (CONNECT first?, what the client sends)
INVALID: dict[str, tuple[bool, list[str | bytes]]] = {
    "invalid handshake": (False, ["4abc"]),
    "unknown packet type": (True, ["4abc"]),
    "event payload not an array": (True, ["42{}"]),
    "event payload empty": (True, ["42[]"]),
    "event name not a string": (True, ["42[1]"]),
    "invalid ack id": (True, ['42abc["nope",1]']),
    "ack without id": (True, ["43[]"]),
    "payload not JSON": (True, ['42["nope"']),
    "event before CONNECT": (False, ['42["nope"]']),
    "binary event before CONNECT": (False, [BINARY_NOPE, b"\x01"]),
    "CONNECT payload not an object": (False, ['40["token"]']),
    "second CONNECT": (True, ["40"]),
    "DISCONNECT from a namespace not joined": (True, ["41/admin,"]),
    "binary message without a packet": (True, [b"\x01\x02"]),
    "text while attachments are pending": (True, [BINARY_NOPE, '42["nope"]']),
    "placeholder out of range": (True, [f'451-["nope",{PLACEHOLDER % 1}]', b"\x01"]),
    "attachment count zero": (True, ['450-["nope"]']),
    # issue 12: `authenticate` nested 260 deep (orjson decodes it, cannot encode it back)
    "authenticate nested 260 deep": (False, ["40", '421["authenticate",' + "[" * 260
                                             + "]" * 260 + "]"]),
}


@pytest.mark.parametrize(("connect", "packets"), INVALID.values(), ids=INVALID.keys())
async def test_an_invalid_packet_closes_that_connection_only(
        server_log: pytest.LogCaptureFixture, connect: bool,
        packets: list[str | bytes]) -> None:
    async with run_server() as srv, client(srv, "bystander") as bystander, \
            opened(srv.url) as (ws, handshake):
        if connect:
            ws.send_text(connect_packet(token("offender")))
            assert CONNECTED.fullmatch(await ws.text())
        await asyncio.sleep(0.05)
        server_log.clear()
        for packet in packets:
            if isinstance(packet, str):
                ws.send_text(packet)
            else:
                ws.send_binary(packet)
        assert await ws.closed_with() == 1002
        await asyncio.sleep(0.1)
        lines = json_lines(server_log)
        assert len(lines) <= 1, lines
        assert not [line for line in lines if "exc" in line or line["level"] == "error"], lines
        assert all(handshake["sid"] in line["msg"] for line in lines), lines
        await works(bystander)
        assert connections(srv) == (1, 1)


async def test_an_invalid_packet_over_polling_closes_the_session(
        server_log: pytest.LogCaptureFixture) -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = Polling(http, srv.url)
        await poll.open()
        await poll.send(connect_packet(token()))
        assert CONNECTED.fullmatch((await poll.packets(1))[0])
        waiting = await poll.pending()
        server_log.clear()
        await poll.send("42{}")  # a valid Engine.IO message: the Socket.IO layer refuses it
        answer = await waiting
        assert (answer.status, answer.body) == (200, "1")  # the pending poll gets a close
        assert (await poll.get()).status == 400
        lines = json_lines(server_log)
        assert len(lines) <= 1 and not [line for line in lines if "exc" in line], lines
        assert connections(srv) == (0, 0)
