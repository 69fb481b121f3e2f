"""Socket.IO connection-state recovery with the official client (socket.io-client 4, Node).

The client is the stock one with no recovery code of its own: it stores the ``pid`` of the
CONNECT answer and the last argument of each event (the offset), and sends both back when
it reconnects by itself; ``socket.recovered`` says whether the server restored the session.
Scenarios: a dropped transport (memory bus), reconnecting to the other of two instances
after the first was killed with -9, a SIGTERM restart of the only instance (both on
Redis), and the unrecoverable cases (window passed, gap older than the history, another
user's token). A client without recovery support resuming by ``auth.position`` gets its
order rooms back too.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from support.clients import Recorder, quiet
from support.forwarder import forwarding
from support.js_client import JsClient
from support.redis_server import RedisServer
from support.server import ServerProcess, call, publish_to, run_server, token

ROOMS = ["user:ana", "role:ops", "order:o-9"]
MISSED = 50


def ana() -> str:
    return token("ana", ["ops"], orders=["o-9"])


def ticks(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` events spread over the user, role and order rooms, numbered in order."""
    return [{"id": f"{prefix}{n}", "type": "PUSH", "event": "tick", "rooms": [ROOMS[n % 3]],
             "data": {"n": n}} for n in range(count)]


async def publish(url: str, events: list[dict[str, Any]]) -> None:
    status, body = await publish_to(url, events)
    assert status == 202, body


async def official(url: str, **config: Any) -> JsClient:
    """The official client, subscribed to order o-9 and reconnecting by itself after 1.5 s."""
    client = await JsClient(url, {
        "auth": {"token": ana()}, "reconnection": True, "reconnectionDelay": 1500,
        "timeoutMs": 60000, **config,
        "emit": [{"event": "subscribe_order_updates", "args": ["o-9"], "ack": True}]}).start()
    await client.until("ready")
    return client


def tick_ids(client: JsClient) -> list[str]:
    return [line["args"][0]["eventId"] for line in client.lines
            if line["type"] == "event" and line["event"] == "tick"]


async def receive(client: JsClient, count: int, limit: float = 20.0) -> None:
    async with asyncio.timeout(limit):
        while len(tick_ids(client)) < count:
            await client.until("event", limit=limit)


async def drop_and_publish_meanwhile(client: JsClient, publisher: str) -> dict[str, Any]:
    """Close the transport, publish what the client will miss, wait for its reconnect."""
    await client.send({"cmd": "drop"})
    await client.until("disconnect")
    await publish(publisher, ticks("missed", MISSED))
    return await client.until("connect", limit=30)


async def first_event(client: JsClient, publisher: str) -> dict[str, Any]:
    """The client's first CONNECT line, once it has received the event ``before``."""
    await publish(publisher, [{**ticks("before", 1)[0], "id": "before"}])
    await receive(client, 1)
    return client.of("connect")[0]


async def assert_recovered(client: JsClient, first: dict[str, Any], publisher: str,
                           again: dict[str, Any] | None = None) -> None:
    """The session came back whole (``again``: its new CONNECT line, else after a drop):
    same sid, every missed event once and in order before live ones, and its order room
    still joined (a live order event arrives)."""
    again = again or await drop_and_publish_meanwhile(client, publisher)
    assert again["recovered"] is True and again["id"] == first["id"], again
    await publish(publisher, ticks("live", 3))  # user, role and order room
    await receive(client, 1 + MISSED + 3)
    assert tick_ids(client) == ["before"] + [f"missed{n}" for n in range(MISSED)] \
        + ["live0", "live1", "live2"]
    # Each event's last argument is its position: the offset the client sends back.
    last = [line for line in client.lines if line["type"] == "event"][-1]
    assert last["args"][1] == last["args"][0]["position"]


async def test_dropped_transport_recovers_the_session() -> None:
    async with run_server() as srv:
        client = await official(srv.url)
        try:
            first = await first_event(client, srv.url)
            assert first["recovered"] is False
            await assert_recovered(client, first, srv.url)
        finally:
            await client.kill()


async def test_recovers_on_the_other_instance_after_kill_9(
        redis_server: RedisServer) -> None:
    env = {"REALTIME_REDIS_URL": redis_server.url}
    a, b = ServerProcess(env), ServerProcess(env)
    try:
        await a.start()
        await b.start()
        async with forwarding(a.port) as balancer:
            client = await official(balancer.url)
            try:
                first = await first_event(client, b.url)
                balancer.target_port = b.port  # the balancer now sends new connections to B
                a.kill()  # kill -9: no disconnect hook runs on A
                await client.until("disconnect")
                await publish(b.url, ticks("missed", MISSED))
                await assert_recovered(client, first, b.url,
                                       await client.until("connect", limit=30))
            finally:
                await client.kill()
    finally:
        a.kill()
        b.kill()


async def test_recovers_across_a_sigterm_restart(redis_server: RedisServer) -> None:
    env = {"REALTIME_REDIS_URL": redis_server.url}
    server = ServerProcess(env)
    await server.start()
    try:
        client = await official(server.url, reconnectionDelay=4000)
        try:
            first = await first_event(client, server.url)
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(server.proc.wait, 20) == 0
            await client.until("disconnect")
            restarted = ServerProcess(env, port=server.port)
            server = await restarted.start()
            await publish(server.url, ticks("missed", MISSED))  # before the client is back
            await assert_recovered(client, first, server.url,
                                   await client.until("connect", limit=30))
        finally:
            await client.kill()
    finally:
        server.kill()


@pytest.mark.parametrize("case", ["window passed", "gap older than history", "other user"])
async def test_unrecoverable_sessions_start_afresh(case: str) -> None:
    settings: dict[str, Any] = {"recovery_seconds": 1.0} if case == "window passed" else {}
    if case == "gap older than history":
        settings["history_size"] = 5
    async with run_server(**settings) as srv:
        client = await official(srv.url, reconnectionDelay=2500 if case == "window passed"
                                else 1500)
        try:
            first = await first_event(client, srv.url)
            if case == "other user":
                await client.send({"cmd": "auth", "auth": {"token": token("eve", ["ops"])}})
            again = await drop_and_publish_meanwhile(client, srv.url)
            assert again["recovered"] is False and again["id"] != first["id"], again
            await quiet(0.5)
            assert tick_ids(client) == ["before"]  # never a partial, silent replay
            await publish(srv.url, ticks("live", 3))
            # A new session: the new token's rooms, no order room (eve: role:ops only).
            expected = ["live1"] if case == "other user" else ["live0", "live1"]
            async with asyncio.timeout(10):
                while tick_ids(client)[1:] != expected:
                    await client.until("event")
        finally:
            await client.kill()


async def test_position_resume_restores_order_rooms() -> None:
    """A client without recovery support resumes by ``auth.position``: the order rooms of the
    lost connection come back (re-authorized) and ``recovered`` lists them."""
    async with run_server() as srv:
        first = Recorder()
        await first.client.connect(srv.url, auth={"token": ana()}, transports=["websocket"])
        assert (await first.call("subscribe_order_updates", "o-9"))["ok"] is True
        await publish(srv.url, [{**ticks("before", 1)[0], "id": "before"}])
        [before] = await first.wait_for("tick")
        await first.client.eio.disconnect(abort=True)  # the network is gone: no DISCONNECT
        await publish(srv.url, ticks("missed", 6))
        again = Recorder()
        await again.client.connect(srv.url, auth={"token": ana(), "position": before["position"]},
                                   transports=["websocket"])
        try:
            [recovered] = await again.wait_for("recovered")
            assert recovered == {"recovered": True, "orders": ["o-9"], "ordersRestored": True}
            assert [t["eventId"] for t in again.named("tick")] == [f"missed{n}" for n in range(6)]
        finally:
            await again.client.disconnect()


async def test_granted_rooms_come_back_and_a_purposeful_end_is_not_recoverable() -> None:
    """Rooms a backend joined the session to are part of it; a session the server ended
    with a Socket.IO disconnect (``reconnect: false``) is gone for good."""
    async with run_server() as srv:
        client = await official(srv.url)
        try:
            first = client.of("connect")[0]
            status, _ = await call(srv.url, "POST", "/api/v1/users/ana/rooms",
                                   {"join": ["team:blue"]})
            assert status == 200
            await client.send({"cmd": "drop"})
            await client.until("disconnect")
            again = await client.until("connect", limit=30)
            assert again["recovered"] is True and again["id"] == first["id"]
            await publish(srv.url, [{"id": "team-1", "type": "PUSH", "event": "tick",
                                     "rooms": ["team:blue"], "data": {"n": 0}}])
            await receive(client, 1)
            assert tick_ids(client) == ["team-1"]
        finally:
            await client.kill()
        # A connection ended on purpose: its record is forgotten at once.
        recorder = Recorder()
        await recorder.client.connect(srv.url, auth={"token": ana()}, transports=["websocket"])
        pid = srv.server.socketio.connections[recorder.client.get_sid("/")].pid
        await srv.server.socketio.recovery.flush()
        assert pid is not None and await srv.server.backends.sessions.get(pid) is not None
        status, _ = await call(srv.url, "POST", "/api/v1/users/ana/disconnect",
                               {"reason": "banned", "reconnect": False})
        assert status == 200
        await recorder.wait_disconnected()
        await srv.server.socketio.recovery.flush()
        assert await srv.server.backends.sessions.get(pid) is None


@pytest.mark.parametrize("auth", [
    {"pid": 12345, "offset": "x"},
    {"pid": {"$ne": ""}, "offset": ["a"]},
    {"pid": "p" * 100_000},
    {"pid": "", "offset": None},
    {"pid": "not-a-session", "offset": "deadbeef-999999999999"},
])
async def test_hostile_recovery_fields_get_a_new_session(
        auth: dict[str, Any], server_log: pytest.LogCaptureFixture) -> None:
    async with run_server() as srv:
        client = Recorder()
        await client.client.connect(srv.url, auth={"token": ana(), **auth},
                                    transports=["websocket"])
        try:
            conn = srv.server.socketio.connections[client.client.get_sid("/")]
            assert conn.pid is not None and conn.pid != auth.get("pid")
            await publish(srv.url, [{**ticks("after", 1)[0], "id": "after"}])
            assert [t["eventId"] for t in await client.wait_for("tick")] == ["after"]
        finally:
            await client.client.disconnect()
    assert "Traceback" not in server_log.text
