"""Hostile clients: each attack of issue 11's "Why", against the real server on a real port.

Lifecycle hijack through reserved event names, server-side ends that must close the TCP
connection, a 40,000-fragment message, long-polling bodies at and over ``maxPayload``,
floods of invalid packets (log hygiene) and SIGTERM with an upgraded official client.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import orjson

from support.clients import connected, quiet
from support.hostile import (
    LogReader,
    Polling,
    RawWebSocket,
    connect_packet,
    event_packet,
    frame,
    log_problems,
    open_websocket,
    probing,
    websocket,
)
from support.js_client import JsClient
from support.server import (
    SOCKETIO_CONNECTIONS,
    ServerProcess,
    metric,
    presence,
    publish_to,
    run_server,
    token,
)

#: Names python-socketio treats as lifecycle hooks or its catch-all.
RESERVED = ["disconnect", "connect", "*", "disconnecting", "connect_error"]


@contextlib.asynccontextmanager
async def subprocess_server(**env: str) -> AsyncIterator[ServerProcess]:
    server = await ServerProcess(env).start()
    try:
        yield server
    finally:
        server.kill()


async def publish_greeting(url: str, user: str, n: int) -> None:
    status, body = await publish_to(url, {
        "id": f"greet-{user}-{n}", "type": "PUSH", "event": "greeting",
        "rooms": [f"user:{user}"], "data": {"n": n}})
    assert status == 202, body


def ack_of(message: str | bytes, ack: int) -> dict[str, Any]:
    assert isinstance(message, str) and message.startswith(f"43{ack}["), message
    [answer] = orjson.loads(message[2 + len(str(ack)):])
    assert isinstance(answer, dict)
    return answer


# --- lifecycle hijack ----------------------------------------------------------------


async def test_reserved_event_names_are_refused_like_unknown_events() -> None:
    async with run_server() as srv, connected(srv.url, token("hijacker")) as client:
        for name in RESERVED:
            answer = await client.call(name)
            assert answer["ok"] is False and answer["error"] == "unknown_event", (name, answer)
        for name in RESERVED:
            await client.emit(name, {"reason": "io client disconnect"})
        errors = await client.wait_for("error", count=len(RESERVED))
        assert sorted(e["event"] for e in errors) == sorted(RESERVED)
        assert {e["code"] for e in errors} == {"unknown_event"}
        await publish_greeting(srv.url, "hijacker", 1)  # still a normal, live client
        await client.wait_for("greeting")
        assert client.client.connected


async def test_replayed_connect_changes_neither_connection_count_nor_presence() -> None:
    async with run_server() as srv:
        async with connected(srv.url, token("twice")) as client:
            assert await metric(srv.url, SOCKETIO_CONNECTIONS) == 1
            for sub in ("twice", "twice", "stranger"):
                # What python-socketio would hand its connect handler: (environ, auth).
                answer = await client.call("connect", ({}, {"token": token(sub)}))
                assert answer["error"] == "unknown_event", answer
            assert await metric(srv.url, SOCKETIO_CONNECTIONS) == 1
            assert (await presence(srv.url, "user:twice"))[1]["connections"] == 1
            assert (await presence(srv.url, "user:stranger"))[1]["connections"] == 0
        async with asyncio.timeout(5):
            while await metric(srv.url, SOCKETIO_CONNECTIONS) != 0:
                await asyncio.sleep(0.05)
        assert (await presence(srv.url, "user:twice"))[1]["connections"] == 0


async def test_a_client_that_emitted_disconnect_still_expires() -> None:
    """The real hijack: ``disconnect`` used to cancel the expiry timer (events 36 s late)."""
    async with run_server(jwt_leeway=0) as srv, websocket(srv.url) as ws:
        brief = token("brief", ttl=2)
        expires_at = jwt.decode(brief, options={"verify_signature": False})["exp"]
        assert (await ws.connect({"token": brief})).startswith("40{")
        await ws.send(event_packet("disconnect", ack=1))

        async def publish_until_closed() -> None:
            for n in range(100):
                await publish_greeting(srv.url, "brief", n)
                await asyncio.sleep(0.1)

        publishing = asyncio.create_task(publish_until_closed())
        try:
            await ws.event("token_expired", timeout=4)
            expired = time.time()
            await ws.ended(timeout=1.0)  # TCP closed within a second
        finally:
            publishing.cancel()
        assert expired <= expires_at + 1.0
        [(expired_at, _)] = ws.named("token_expired")
        greetings = [at for at, _ in ws.named("greeting")]
        assert greetings, "the client received nothing before expiry: the test proves nothing"
        assert [at for at in greetings if at > expired_at] == []
        [answer] = [m for m in ws.messages if isinstance(m, str) and m.startswith("431")]
        assert ack_of(answer, 1)["error"] == "unknown_event"


async def test_the_auth_timeout_applies_to_a_client_that_emitted_disconnect() -> None:
    async with run_server(auth_timeout=1) as srv, websocket(srv.url) as ws:
        assert (await ws.connect()).startswith("40{")  # no token: must `authenticate` in 1 s
        opened = time.monotonic()
        await ws.send(event_packet("disconnect"))
        [error] = await ws.event("auth_error", timeout=3)
        assert error["message"] == "authentication timed out"
        await ws.ended(timeout=1.0)
        assert time.monotonic() - opened < 2.5


async def test_star_with_another_sockets_sid_does_nothing_to_that_socket() -> None:
    async with run_server(rate_limit_per_second=1, rate_limit_burst=2,
                          rate_limit_disconnect_after=3) as srv, \
            connected(srv.url, token("victim")) as victim, \
            connected(srv.url, token("attacker")) as attacker:
        victim_sid = victim.client.get_sid()
        for _ in range(10):
            await attacker.emit("*", victim_sid)
        await attacker.wait_disconnected()  # its own rate limit applied, to itself only
        assert {e["code"] for e in attacker.named("error")} >= {"unknown_event", "rate_limited"}
        await quiet()
        assert victim.named("error") == []
        await publish_greeting(srv.url, "victim", 1)
        await victim.wait_for("greeting")
        assert victim.client.connected


# --- every server-side end closes the session and the connection ---------------------


async def test_auth_timeout_closes_every_unauthenticated_connection() -> None:
    """200 raw WebSockets: half never send a Socket.IO CONNECT, half connect without a
    token and never authenticate. Each TCP connection ends within a second of the timeout."""
    async with run_server(auth_timeout=1) as srv:

        async def one(n: int) -> tuple[float, RawWebSocket]:
            ws = await open_websocket(srv.url)
            opened = time.monotonic()
            try:
                if n % 2:
                    assert (await ws.connect()).startswith("40{")
                await ws.ended(timeout=3.0)
                return time.monotonic() - opened, ws
            finally:
                ws.abort()

        results = await asyncio.gather(*(one(n) for n in range(200)))
        lifetimes = sorted(lifetime for lifetime, _ in results)
        print(f"\nauth timeout 1 s: 200 connections ended after {lifetimes[0]:.2f}"
              f"-{lifetimes[-1]:.2f} s")
        assert lifetimes[0] > 0.9 and lifetimes[-1] < 2.0, (lifetimes[:3], lifetimes[-3:])
        socketio_clients = [ws for n, (_, ws) in enumerate(results) if n % 2]
        assert all(ws.named("auth_error") for ws in socketio_clients)


async def test_auth_timeout_ends_long_polling_sessions() -> None:
    async with run_server(auth_timeout=1) as srv, aiohttp.ClientSession() as http:
        sessions = [await Polling(http, srv.url).open() for _ in range(10)]
        opened = time.monotonic()
        answers = await asyncio.gather(*(session.get(timeout=2.5) for session in sessions))
        assert time.monotonic() - opened < 2.0
        assert all(status == 200 and body.split("\x1e")[-1] == "1" for status, body in answers), \
            answers
        for session in sessions:  # and they are gone
            assert (await session.get())[0] == 400


async def test_a_rate_limited_client_is_cut_off_and_cannot_start_over() -> None:
    async with run_server(rate_limit_per_second=5, rate_limit_burst=5,
                          rate_limit_disconnect_after=10) as srv, websocket(srv.url) as ws:
        credentials = {"token": token("flooder")}
        assert (await ws.connect(credentials)).startswith("40{")
        for _ in range(40):
            await ws.send(event_packet("unsubscribe_order_updates", "o1"))
        async with asyncio.timeout(5):
            while not any(args[0].get("message") == "too many events; disconnected"
                          for _, args in ws.named("error")):
                await ws.message()
        kicked = len(ws.messages)
        await ws.send(connect_packet(credentials))  # try to start over on the same connection
        await ws.ended(timeout=1.0)
        assert not [m for m in ws.messages[kicked:] if isinstance(m, str)
                    and m.startswith("40")]


# --- quadratic fragments ---------------------------------------------------------------


async def test_forty_thousand_fragments_never_stall_the_server() -> None:
    async with subprocess_server() as server, probing(server.url) as probe:
        await asyncio.sleep(0.2)
        ws = await open_websocket(server.url)  # unauthenticated
        closing = asyncio.create_task(ws.ended(timeout=10))
        fragments = (frame(0x1, b"4", fin=False) + frame(0x0, b"x", fin=False) * 39_998
                     + frame(0x0, b"x"))
        step = len(fragments) // 4 + 1
        for start in range(0, len(fragments), step):
            await ws.write(fragments[start:start + step])  # refused once the server closed
        code = await closing
        ws.abort()
        await asyncio.sleep(0.3)
    print(f"\n40,000 fragments: closed with {code}; /healthz worst "
          f"{probe.worst * 1000:.0f} ms over {len(probe.latencies)} probes")
    assert code in (1009, 1002), code  # too many fragments, or the message refused
    assert probe.worst < 0.1, probe.slow(0.1)
    assert not probe.failures, probe.failures


# --- long-polling bodies ---------------------------------------------------------------


async def test_a_999999_byte_polling_post_is_read_whole() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        session = await Polling(http, srv.url).open()
        assert session.handshake["maxPayload"] == 1_000_000
        assert (await session.post(connect_packet({"token": token("poster")})))[0] == 200
        status, opened = await session.get()
        assert status == 200 and opened.startswith("40{"), opened
        head, tail = '42["no_such_event","', '"]'
        body = head + "x" * (999_999 - len(head) - len(tail)) + tail
        assert len(body.encode()) == 999_999
        assert (await session.post(body, timeout=5))[0] == 200
        status, answer = await session.get()
        assert status == 200 and answer.startswith('42["error",'), answer[:200]
        error = orjson.loads(answer[2:])[1]
        assert error["event"] == "no_such_event", error
        assert error["code"] in ("unknown_event", "payload_too_large"), error


async def test_a_post_over_max_payload_gets_413_at_once() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as http:
        announced = await Polling(http, srv.url).open()
        started = time.monotonic()
        status, _ = await announced.post(b"4" + b"x" * 1_000_000, timeout=2)
        assert status == 413 and time.monotonic() - started < 1.0

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            yield b"4"
            for _ in range(20):
                yield b"x" * 100_000

        streamed = await Polling(http, srv.url).open()
        started = time.monotonic()
        async with asyncio.timeout(2), http.post(streamed.endpoint, data=chunks()) as response:
            assert response.status == 413
        assert time.monotonic() - started < 1.0
        assert (await streamed.get())[0] == 400  # and the session is closed


# --- log hygiene -----------------------------------------------------------------------

#: Four-byte packets that are not valid Engine.IO or Socket.IO from an unauthenticated client.
INVALID: list[str | bytes] = ["4abc", "42{}", "42[]", "9abc", "4999", "41{}", "0abc", "5abc",
                              "45-[", b"\x00\x01\x02\x03"]


async def test_a_thousand_invalid_packets_log_one_json_line_per_connection_at_most() -> None:
    forged = token("intruder", secret="not-the-server-secret-0123456789abcdef")
    async with subprocess_server(REALTIME_LOG_LEVEL="INFO") as server, \
            aiohttp.ClientSession() as http:
        log = LogReader(server.log_path)

        async def over_websocket(n: int) -> None:
            ws = await open_websocket(server.url, f"&token={forged}")
            try:
                if n % 3 == 0:
                    assert (await ws.connect({"token": forged})).startswith("44")
                await ws.send(INVALID[n % len(INVALID)])
                assert await ws.ended(timeout=3) in (1002, 1008)
            finally:
                ws.abort()

        async def over_polling(n: int) -> None:
            session = await Polling(http, server.url).open()
            packet = INVALID[n % len(INVALID)]
            body = packet if isinstance(packet, str) else b"b" + b"AAECAw=="  # base64
            status, _ = await session.post(body)
            assert status in (200, 400)  # 200: an Engine.IO message, refused right after
            status, last = await session.get(timeout=3)
            assert status == 400 or last.split("\x1e")[-1] == "1", (status, last)

        for batch in range(20):
            await asyncio.gather(*(over_websocket(batch * 40 + n) for n in range(40)))
        for batch in range(4):
            await asyncio.gather(*(over_polling(batch * 50 + n) for n in range(50)))
        await asyncio.sleep(0.5)
        lines = log.new_lines()
    assert log_problems(lines, secrets=(forged, forged.split(".")[2])) == []
    assert len(lines) <= 1000, f"{len(lines)} lines for 1000 connections"
    per_session = Counter(re.findall(r"session (\S+?):", "\n".join(lines)))
    assert not [sid for sid, count in per_session.items() if count > 1], per_session


async def test_a_token_missing_its_header_is_still_masked_in_the_log() -> None:
    """Found by the fuzz suite: a client-chosen namespace is logged, and the mask only knows
    whole three-part tokens. An HS256 header is always the same, so the payload and the
    signature are the token."""
    headless = token("leaky").partition(".")[2]
    async with subprocess_server(REALTIME_LOG_LEVEL="INFO") as server:
        log = LogReader(server.log_path)
        async with websocket(server.url) as ws:
            await ws.send(f'42/{headless},["x"]')  # an event for a namespace not joined
            assert await ws.ended(timeout=3) == 1002
        await asyncio.sleep(0.3)
        lines = log.new_lines()
    assert lines, "the server logged nothing: the test proves nothing"
    assert log_problems(lines, secrets=(headless, headless.split(".")[1])) == []


# --- shutdown ----------------------------------------------------------------------------


async def test_sigterm_with_an_upgraded_official_client_ends_within_grace() -> None:
    async with subprocess_server(REALTIME_SHUTDOWN_GRACE="3") as server:
        client = await JsClient(server.url, {"auth": {"token": token("js-upgraded")},
                                             "transports": ["polling", "websocket"],
                                             "timeoutMs": 30000}).start()
        try:
            assert (await client.until("upgrade"))["transport"] == "websocket"
            if not any(line["type"] == "ready" for line in client.lines):
                await client.until("ready")
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.proc.wait, 15)
            elapsed = time.monotonic() - started
        finally:
            await client.kill()
    print(f"\nSIGTERM with an upgraded official client: exited {code} in {elapsed:.2f} s")
    assert code == 0 and elapsed < 3.5, (code, elapsed)
