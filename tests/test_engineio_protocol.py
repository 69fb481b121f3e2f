"""Engine.IO v4 as its protocol document (``socketio/engine.io-protocol``) states it, case by case.

Raw HTTP requests and raw WebSocket frames against the real server on ``/socket.io/``. The
document's reference server echoes messages; ours runs Socket.IO on top, so a message a
test sends is a Socket.IO packet and what comes back is the Socket.IO answer (a CONNECT,
an ``error`` event for an unknown event, an ack). Error bodies carry the reference
implementation's codes (0 unknown transport, 1 unknown session, 2 bad handshake method,
3 bad request, 5 unsupported protocol version).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from support.packets import CONNECTED, connect_packet, refusal
from support.polling import POLLING, Answer, Polling, request
from support.server import Running, run_server, token
from support.ws import WEBSOCKET, Closed, opened, upgraded

#: The conformance suite's heartbeat (300 ms / 200 ms).
FAST: dict[str, Any] = {"ping_interval": 0.3, "ping_timeout": 0.2}
HANDSHAKE_KEYS = {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}
BAD_REQUEST = {"code": 3, "message": "Bad request"}


def sessions(srv: Running) -> int:
    """Engine.IO sessions the server holds."""
    return len(srv.server.socketio.sio.engine.sockets)


def error_of(answer: Answer) -> Any:
    """An error answer's JSON body (any other body as is, for the failure message)."""
    try:
        return orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return answer.body


async def assert_gone(srv: Running, poll: Polling) -> None:
    """The session is over: a poll gets 400 (unknown session), the server holds none."""
    answer = await poll.get()
    assert (answer.status, error_of(answer)) == (400, UNKNOWN_SID)
    assert sessions(srv) == 0


async def polling_session(srv: Running, http: aiohttp.ClientSession) -> Polling:
    poll = Polling(http, srv.url)
    await poll.open()
    return poll


# --- handshake -------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "millis"), [
    ((0.3, 0.2), (300, 200)),
    ((2.5, 0.75), (2500, 750)),
    ((25, 20), (25000, 20000)),
])
async def test_polling_handshake(seconds: tuple[float, float], millis: tuple[int, int]) -> None:
    async with run_server(ping_interval=seconds[0], ping_timeout=seconds[1]) as srv, \
            aiohttp.ClientSession() as http:
        answer = await request(http, "GET", srv.url + POLLING)
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; charset=UTF-8"
        assert answer.body[:1] == "0"
        handshake = orjson.loads(answer.body[1:])
        assert handshake.keys() == HANDSHAKE_KEYS
        assert isinstance(handshake["sid"], str) and handshake["sid"]
        assert handshake["upgrades"] == ["websocket"]
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == millis
        assert all(type(handshake[key]) is int
                   for key in ("pingInterval", "pingTimeout", "maxPayload"))
        assert handshake["maxPayload"] == 1_000_000
        second = await Polling(http, srv.url).open()
        assert second["sid"] != handshake["sid"]
        assert sessions(srv) == 2


@pytest.mark.parametrize(("seconds", "millis"), [((0.3, 0.2), (300, 200)),
                                                 ((2.5, 0.75), (2500, 750))])
async def test_websocket_handshake(seconds: tuple[float, float], millis: tuple[int, int]) -> None:
    async with run_server(ping_interval=seconds[0], ping_timeout=seconds[1]) as srv, \
            opened(srv.url) as (_, handshake):
        assert handshake.keys() == HANDSHAKE_KEYS
        assert isinstance(handshake["sid"], str) and handshake["sid"]
        assert handshake["upgrades"] == []
        assert (handshake["pingInterval"], handshake["pingTimeout"]) == millis
        assert handshake["maxPayload"] == 1_000_000
        assert list(srv.server.socketio.sio.engine.sockets) == [handshake["sid"]]


BAD_HANDSHAKES = [  # (query, error body)
    ("", {"code": 5, "message": "Unsupported protocol version"}),
    ("?transport={t}", {"code": 5, "message": "Unsupported protocol version"}),
    ("?EIO=abc&transport={t}", {"code": 5, "message": "Unsupported protocol version"}),
    ("?EIO=3&transport={t}", {"code": 5, "message": "Unsupported protocol version"}),
    ("?EIO=4", {"code": 0, "message": "Transport unknown"}),
    ("?EIO=4&transport=abc", {"code": 0, "message": "Transport unknown"}),
]


@pytest.mark.parametrize(("query", "error"), BAD_HANDSHAKES)
async def test_polling_handshake_with_a_bad_query_gets_400(query: str, error: Any) -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        answer = await request(http, "GET", f"{srv.url}/socket.io/{query.format(t='polling')}")
        assert (answer.status, error_of(answer)) == (400, error)
        assert sessions(srv) == 0


@pytest.mark.parametrize(("query", "error"), BAD_HANDSHAKES)
async def test_websocket_handshake_with_a_bad_query_opens_nothing(query: str, error: Any) -> None:
    async with run_server() as srv, \
            upgraded(srv.url, f"/socket.io/{query.format(t='websocket')}") as (ws, head):
        assert head.startswith(b"HTTP/1.1 400")
        length = re.search(rb"Content-Length: (\d+)", head)
        assert length is not None, head
        assert orjson.loads(await ws.reader.readexactly(int(length[1]))) == error
        assert sessions(srv) == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_handshake_with_a_bad_method_gets_400(method: str) -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        answer = await request(http, method, srv.url + POLLING, data="40")
        assert (answer.status, error_of(answer)) == (
            400, {"code": 2, "message": "Bad handshake method"})
        assert sessions(srv) == 0


async def test_an_unknown_sid_gets_400() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = Polling(http, srv.url)
        poll.sid = "no-such-session"
        for answer in (await poll.get(), await poll.post("40")):
            assert (answer.status, error_of(answer)) == (400, UNKNOWN_SID)
        async with upgraded(srv.url, WEBSOCKET + "&sid=no-such-session") as (_, head):
            assert head.startswith(b"HTTP/1.1 400")
        assert sessions(srv) == 0


# --- messages --------------------------------------------------------------------------


async def test_polling_payload_with_one_packet() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        answer = await poll.post(connect_packet(token()))
        assert (answer.status, answer.body) == (200, "ok")
        answer = await poll.get()
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; charset=UTF-8"
        assert CONNECTED.fullmatch(answer.body), answer.body


async def test_polling_payload_with_several_packets() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        await poll.send(connect_packet(token()), '42["nope"]', '421["nope2"]', '42["nope3"]')
        first, *answers = await poll.packets(4)
        assert CONNECTED.fullmatch(first), first
        # each event is handled in its own task: the answers may come in any order
        assert sorted(answers) == sorted([refusal("nope"), refusal("nope2", ack=1),
                                          refusal("nope3")])


async def test_polling_payload_with_text_and_binary_packets() -> None:
    """A binary packet travels base64-encoded, prefixed with ``b``: here the attachment of
    a Socket.IO binary event (``51-``), which is only whole once it is decoded."""
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        await poll.send(connect_packet(token()),
                        '451-7["nope",{"_placeholder":true,"num":0}]', "bAQIDBA==",
                        '421["nope2"]')
        first, *answers = await poll.packets(3)
        assert CONNECTED.fullmatch(first), first
        assert sorted(answers) == sorted([refusal("nope", ack=7), refusal("nope2", ack=1)])


async def test_websocket_text_and_binary_messages() -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        ws.send_text(connect_packet(token()))
        assert CONNECTED.fullmatch(await ws.text())
        ws.send_text('452-9["nope",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        ws.send_binary(b"\x01\x02\x03\x04")
        ws.send_binary(b"")
        assert await ws.text() == refusal("nope", ack=9)
        ws.send_text('42["nope2"]')
        assert await ws.text() == refusal("nope2")


@pytest.mark.parametrize("body", ["abc", "", "7", "4hello\x1e", "bnot base64!", b"\xff\xfe"])
@pytest.mark.parametrize("pending", [False, True], ids=["no-get", "pending-get"])
async def test_an_invalid_polling_packet_gets_400_and_closes_the_session(
        body: str | bytes, pending: bool) -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        waiting = await poll.pending() if pending else None
        answer = await poll.post(body)
        assert (answer.status, error_of(answer)) == (400, BAD_REQUEST)
        if waiting is not None:  # the pending long-poll is ended with a close packet
            closed = await waiting
            assert (closed.status, closed.body) == (200, "1")
        await assert_gone(srv, poll)


@pytest.mark.parametrize("packet", ["abc", "", "7", "3probe"])
async def test_an_invalid_websocket_packet_closes_the_session(packet: str) -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        ws.send_text(packet)
        assert await ws.closed_with() == 1002
        assert sessions(srv) == 0


async def test_a_duplicate_poll_closes_the_session() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        first = await poll.pending()
        second = await poll.get()
        assert (second.status, error_of(second)) == (400, BAD_REQUEST)
        answer = await first
        assert (answer.status, answer.body) == (200, "1")
        await assert_gone(srv, poll)


async def test_a_duplicate_post_closes_the_session() -> None:
    """A client MUST NOT have more than one active POST: the server MUST answer the second
    400 and close the session. The first is held open by a body still being sent."""
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        finish = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:  # a CONNECT, "4" then "0"
            yield b"4"
            await finish.wait()
            yield b"0"

        first = asyncio.ensure_future(request(http, "POST", poll.url, data=slow_body()))
        await asyncio.sleep(0.1)
        try:
            second = await poll.post("6")
            assert (second.status, error_of(second)) == (400, BAD_REQUEST)
        finally:
            finish.set()
            with contextlib.suppress(Exception):  # the document says nothing of the first
                await asyncio.wait_for(first, 5)
        await assert_gone(srv, poll)


# --- heartbeat -------------------------------------------------------------------------


async def test_polling_ping_pong() -> None:
    async with run_server(ping_interval=0.3, ping_timeout=0.5) as srv, \
            aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        for _ in range(3):
            started = time.monotonic()
            answer = await poll.get()
            assert (answer.status, answer.body) == (200, "2")
            assert time.monotonic() - started > 0.1  # a ping per interval, not sooner
            answer = await poll.post("3")
            assert (answer.status, answer.body) == (200, "ok")
        assert sessions(srv) == 1


async def test_websocket_ping_pong() -> None:
    async with run_server(ping_interval=0.3, ping_timeout=0.5) as srv, \
            opened(srv.url) as (ws, _):
        for _ in range(3):
            started = time.monotonic()
            assert await ws.message() == "2"
            assert time.monotonic() - started > 0.1
            ws.send_text("3")
        assert sessions(srv) == 1


async def test_polling_ping_timeout() -> None:
    async with run_server(**FAST) as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        await asyncio.sleep(0.3 + 0.2 + 0.1)
        await assert_gone(srv, poll)


async def test_polling_ping_timeout_ends_the_pending_poll() -> None:
    async with run_server(**FAST) as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        assert (await poll.get()).body == "2"
        started = time.monotonic()
        answer = await poll.get()  # no pong: the timeout answers this poll
        assert (answer.status, answer.body) == (200, "1")
        assert 0.05 < time.monotonic() - started < 1.0
        await assert_gone(srv, poll)


async def test_websocket_ping_timeout() -> None:
    async with run_server(**FAST) as srv, opened(srv.url) as (ws, _):
        started = time.monotonic()
        assert await ws.message() == "2"
        with pytest.raises(Closed) as closed:
            await ws.message()
        assert closed.value.code == 1000
        assert 0.3 < time.monotonic() - started < 1.5
        assert await ws.reader.read() == b""
        assert sessions(srv) == 0


# --- close -----------------------------------------------------------------------------


async def test_client_close_over_polling() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        waiting = await poll.pending()
        answer = await poll.post("1")
        assert (answer.status, answer.body) == (200, "ok")
        answer = await waiting
        assert (answer.status, answer.body) == (200, "6")
        await assert_gone(srv, poll)


async def test_client_close_over_websocket() -> None:
    async with run_server() as srv, opened(srv.url) as (ws, _):
        ws.send_text(connect_packet(token()))
        assert CONNECTED.fullmatch(await ws.text())
        ws.send_text("1")
        assert await ws.closed_with() == 1000
        assert sessions(srv) == 0


# --- upgrade ---------------------------------------------------------------------------


async def probed(ws_head: tuple[Any, bytes]) -> None:
    ws, head = ws_head
    assert head.startswith(b"HTTP/1.1 101"), head
    ws.send_text("2probe")
    assert await ws.message() == "3probe"


async def test_upgrade_from_polling_to_websocket() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        waiting = await poll.pending()
        async with upgraded(srv.url, f"{WEBSOCKET}&sid={poll.sid}") as (ws, head):
            await probed((ws, head))
            answer = await waiting  # the pending long-poll ends with a noop
            assert (answer.status, answer.body) == (200, "6")
            answer = await poll.get()  # and so does any poll while the probe is on
            assert (answer.status, answer.body) == (200, "6")
            ws.send_text("5")
            ws.send_text(connect_packet(token()))
            assert CONNECTED.fullmatch(await ws.text())
            for answer in (await poll.get(), await poll.post('42["nope"]')):
                assert (answer.status, error_of(answer)) == (400, BAD_REQUEST)
            ws.send_text('421["nope"]')
            assert await ws.text() == refusal("nope", ack=1)
            assert srv.server.socketio.sio.engine.transport(poll.sid) == "websocket"


async def test_packets_queued_before_the_upgrade_go_over_the_websocket() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        await poll.send(connect_packet(token()), '42["nope"]')
        await asyncio.sleep(0.1)  # both answers wait in the session's queue
        async with upgraded(srv.url, f"{WEBSOCKET}&sid={poll.sid}") as ws_head:
            await probed(ws_head)
            assert (await poll.get()).body == "6"
            ws = ws_head[0]
            ws.send_text("5")
            assert CONNECTED.fullmatch(await ws.text())
            assert await ws.text() == refusal("nope")


async def test_polling_after_the_upgrade_gets_400() -> None:
    """As the suite does it: probe and upgrade sent at once, then a poll."""
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        async with upgraded(srv.url, f"{WEBSOCKET}&sid={poll.sid}") as (ws, _):
            ws.send_text("2probe")
            ws.send_text("5")
            assert await ws.message() == "3probe"
            await asyncio.sleep(0.05)
            answer = await poll.get()
            assert (answer.status, error_of(answer)) == (400, BAD_REQUEST)
            ws.send_text(connect_packet(token()))
            assert CONNECTED.fullmatch(await ws.text())


async def test_a_second_websocket_for_an_upgraded_session_is_closed() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        path = f"{WEBSOCKET}&sid={poll.sid}"
        async with upgraded(srv.url, path) as ws_head:
            await probed(ws_head)
            ws = ws_head[0]
            ws.send_text("5")
            async with upgraded(srv.url, path) as (intruder, head):
                assert head.startswith(b"HTTP/1.1 101")
                assert await intruder.closed_with() == 1008
            ws.send_text(connect_packet(token()))
            assert CONNECTED.fullmatch(await ws.text())
            assert sessions(srv) == 1


# --- maxPayload --------------------------------------------------------------------------


async def test_a_polling_post_of_999_999_bytes_is_read_whole() -> None:
    """One Socket.IO event of 999,999 bytes (under maxPayload): the server reads all of it,
    as its answer shows: the exact size of the event's argument, refused as too large for
    an event (64 KiB) but not for the transport."""
    async with run_server(max_payload_bytes=65536) as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        await poll.send(connect_packet(token()))
        assert CONNECTED.fullmatch((await poll.packets(1))[0])
        head, tail = '421["big","', '"]'
        blob = "x" * (999_999 - len(head) - len(tail))
        body = head + blob + tail
        assert len(body.encode()) == 999_999
        await poll.send(body)
        size = len(orjson.dumps([blob]))
        assert await poll.packets(1) == [refusal("big", 1, "payload_too_large",
                                                 f"payload is {size} bytes; limit 65536")]
        assert sessions(srv) == 1


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start:start + 64 * 1024]


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_polling_post_over_max_payload_gets_413_and_closes_the_session(
        announced: bool) -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        poll = await polling_session(srv, http)
        body = ("42" + "x" * (1_000_001 - 2)).encode()
        answer = await request(http, "POST", poll.url,
                               data=body if announced else _chunks(body))
        assert (answer.status, error_of(answer)) == (
            413, {"code": 3, "message": "Payload too large"})
        await assert_gone(srv, poll)


# --- CORS (long-polling) -----------------------------------------------------------------

APP, EVIL = "https://app.example", "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}


async def test_cors_without_configured_origins_allows_any_origin_without_credentials() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        answers = [await request(http, "GET", srv.url + POLLING, headers={"Origin": EVIL})]
        poll = Polling(http, srv.url)
        await poll.open()
        answers.append(await request(http, "POST", poll.url, data=connect_packet(token()),
                                     headers={"Origin": EVIL}))
        answers.append(await request(http, "GET", srv.url + "/socket.io/?EIO=9",
                                     headers={"Origin": EVIL}))
        preflight = await request(http, "OPTIONS", poll.url, headers={"Origin": EVIL, **PREFLIGHT})
        assert [a.status for a in answers] == [200, 200, 400]
        assert preflight.status == 204
        for answer in (*answers, preflight):
            assert answer.headers.getall("Access-Control-Allow-Origin") == ["*"]
            assert "Access-Control-Allow-Credentials" not in answer.headers
        assert {m.strip() for m in preflight.headers[
            "Access-Control-Allow-Methods"].split(",")} >= {"GET", "POST"}
        assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"


async def test_cors_with_configured_origins_reflects_only_those() -> None:
    async with run_server(cors_origins=[APP, "https://other.example"]) as srv, \
            aiohttp.ClientSession() as http:
        allowed = await request(http, "GET", srv.url + POLLING, headers={"Origin": APP})
        refused = await request(http, "GET", srv.url + POLLING, headers={"Origin": EVIL})
        anonymous = await request(http, "GET", srv.url + POLLING)
        preflight = await request(http, "OPTIONS", srv.url + POLLING,
                                  headers={"Origin": APP, **PREFLIGHT})
        bad_preflight = await request(http, "OPTIONS", srv.url + POLLING,
                                      headers={"Origin": EVIL, **PREFLIGHT})
        assert [a.status for a in (allowed, refused, anonymous)] == [200, 200, 200]
        assert (preflight.status, bad_preflight.status) == (204, 204)
        for answer in (allowed, preflight):
            assert answer.headers.getall("Access-Control-Allow-Origin") == [APP]
            assert answer.headers["Access-Control-Allow-Credentials"] == "true"
        for answer in (refused, anonymous, bad_preflight):
            assert "Access-Control-Allow-Origin" not in answer.headers
            assert "Access-Control-Allow-Credentials" not in answer.headers
        for answer in (allowed, refused, anonymous, preflight, bad_preflight):
            assert "Origin" in {v.strip() for v in answer.headers.get("Vary", "").split(",")}
        assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
