"""Backend control API (issue 15): disconnect, revoke, join/leave, history and info, over
HTTP and the Kafka control topic, on one instance and on two behind one Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import socketio

from support.clients import connected, quiet
from support.js_client import JsClient
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, dlq_headers, produce, read_all, wait_ready
from support.redis_server import RedisServer
from support.server import ServerProcess, call, publish_to, run_server, token
from support.sse import sse


def push(event_id: str, event: str, *rooms: str) -> dict[str, Any]:
    return {"id": event_id, "type": "PUSH", "event": event, "rooms": list(rooms),
            "data": {"n": event_id}}


async def refused(url: str, jwt: str) -> Any:
    """Connect with ``jwt``; the ``connect_error`` data (fails if the connection is accepted)."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": jwt}, transports=["websocket"],
                             wait_timeout=5)
    await client.disconnect()
    return errors[0]  # {message, data: {code}} as sent


async def sse_status(url: str, jwt: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/sse", headers={"Authorization": f"Bearer {jwt}"}) as response:
        return response.status


# --- one instance ------------------------------------------------------------------------

ENDPOINTS = [("POST", "/api/v1/users/u1/disconnect", {}),
             ("POST", "/api/v1/tokens/revoke", {"jti": "x"}),
             ("POST", "/api/v1/users/u1/rooms", {"join": ["order:1"]}),
             ("GET", "/api/v1/rooms/user:u1/history", None),
             ("GET", "/api/v1/info", None)]


async def test_only_service_tokens_may_control() -> None:
    async with run_server() as srv:
        for method, path, body in ENDPOINTS:
            status, answer = await call(srv.url, method, path, body,
                                        bearer=token("u1", ["admin"]))
            assert (status, answer["error"]["code"]) == (403, "forbidden"), path
            status, answer = await call(srv.url, method, path, body, bearer="not-a-jwt")
            assert status == 401, path


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/users/u1/disconnect", b"[1]"),
    ("/api/v1/users/u1/disconnect", b"{not json"),
    ("/api/v1/users/u1/disconnect", b'{"reconnect": "yes"}'),
    ("/api/v1/users/u1/disconnect", b'{"reason": "two words"}'),
    ("/api/v1/users/u1/disconnect", b'{"userId": "u2"}'),
    ("/api/v1/users/u1/disconnect", b'{"extra": 1}'),
    ("/api/v1/tokens/revoke", b"{}"),
    ("/api/v1/tokens/revoke", b'{"jti": ""}'),
    ("/api/v1/tokens/revoke", b'{"jti": "a", "userId": "u1"}'),
    ("/api/v1/tokens/revoke", b'{"userId": "u1"}'),
    ("/api/v1/tokens/revoke", b'{"userId": "u1", "issuedBefore": "yesterday"}'),
    ("/api/v1/tokens/revoke", b'{"userId": "u1", "issuedBefore": -1}'),
    ("/api/v1/tokens/revoke", b'{"jti": "a", "expiresAt": true}'),
    ("/api/v1/users/u1/rooms", b'{"join": ["bad room"]}'),
    ("/api/v1/users/u1/rooms", b'{"join": "order:1"}'),
    ("/api/v1/users/u1/rooms", b'{"join": ["order:1"], "leave": ["order:1"], "x": 1}'),
])
async def test_bad_bodies_get_400(path: str, body: bytes) -> None:
    async with run_server() as srv:
        status, answer = await call(srv.url, "POST", path, raw=body)
        assert status == 400, answer
        assert set(answer["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("query", ["?since=nope", "?limit=0", "?limit=5000", "?limit=x"])
async def test_bad_history_queries_get_400(query: str) -> None:
    async with run_server() as srv:
        status, answer = await call(srv.url, "GET", f"/api/v1/rooms/user:u1/history{query}")
        assert status == 400, answer


async def test_disconnect_ends_socketio_and_sse_with_the_reason() -> None:
    async with run_server() as srv, connected(srv.url, token("u1")) as client, \
            connected(srv.url, token("u2")) as other, sse(srv.url, token("u1")) as stream:
        status, answer = await call(srv.url, "POST", "/api/v1/users/u1/disconnect",
                                    {"reason": "banned"})
        assert status == 200
        assert answer == {"disconnected": 2, "instances": 1, "answered": 1, "complete": True}
        await client.wait_disconnected(1)
        assert client.named("disconnected") == [{"reason": "banned", "reconnect": False}]
        await asyncio.wait_for(stream.ended.wait(), 1)
        assert stream.named("disconnected") == [{"reason": "banned", "reconnect": False}]
        assert other.client.connected and other.named("disconnected") == []


async def test_revoked_token_is_refused_everywhere_and_its_connections_end() -> None:
    old, fresh = token("u1"), token("u1")
    async with run_server() as srv, connected(srv.url, old) as client, \
            connected(srv.url, fresh) as keeper, connected(srv.url) as late:
        jti = _claims(old)["jti"]
        status, answer = await call(srv.url, "POST", "/api/v1/tokens/revoke", {"jti": jti})
        assert (status, answer["revoked"], answer["disconnected"]) == (200, True, 1)
        await client.wait_disconnected(1)
        assert client.named("disconnected") == [{"reason": "token_revoked", "reconnect": False}]
        assert keeper.client.connected
        assert (await refused(srv.url, old))["data"]["code"] == "invalid_token"
        assert await sse_status(srv.url, old) == 401
        answer = await keeper.call("refresh_token", old)
        assert (answer["ok"], answer["error"]) == (False, "invalid_token")
        answer = await late.call("authenticate", old)
        assert (answer["ok"], answer["error"]) == (False, "invalid_token")


async def test_revoke_by_user_and_issue_time() -> None:
    before = time.time() - 100
    async with run_server() as srv, connected(srv.url, token("u1", now=before)) as old, \
            connected(srv.url, token("u1")) as new:
        status, answer = await call(srv.url, "POST", "/api/v1/tokens/revoke",
                                    {"userId": "u1", "issuedBefore": before + 50})
        assert (status, answer["disconnected"]) == (200, 1)
        await old.wait_disconnected(1)
        await quiet(0.2)
        assert new.client.connected
        assert (await refused(srv.url, token("u1", now=before)))["data"]["code"] == "invalid_token"


async def test_join_and_leave_move_live_connections() -> None:
    async with run_server() as srv, connected(srv.url, token("u1")) as client, \
            sse(srv.url, token("u1")) as stream:
        status, answer = await call(srv.url, "POST", "/api/v1/users/u1/rooms",
                                    {"join": ["order:9", "team:red"]})
        assert (status, answer["connections"]) == (200, 2)
        await srv.publish(push("a", "to_order", "order:9"))
        await client.wait_for("to_order")
        await stream.wait_for("to_order")
        status, _ = await call(srv.url, "POST", "/api/v1/users/u1/rooms",
                               {"leave": ["order:9"]})
        await srv.publish(push("b", "gone", "order:9"))
        await srv.publish(push("c", "team", "team:red"))
        await client.wait_for("team")
        await stream.wait_for("team")
        assert client.named("gone") == [] and stream.named("gone") == []
        # replay-free: joining a room with history sends none of it
        assert [e for e, _ in client.events] == ["to_order", "team"]


async def test_history_returns_exactly_the_retained_events() -> None:
    async with run_server(history_size=3) as srv:
        status, answer = await call(srv.url, "GET", "/api/v1/rooms/user:u1/history")
        assert (status, answer["events"], answer["reachesBack"]) == (200, [], True)
        for n in range(5):
            await srv.publish(push(f"h{n}", "tick", "user:u1"))
        await srv.publish(push("other", "tick", "user:u2"))
        status, answer = await call(srv.url, "GET", "/api/v1/rooms/user:u1/history")
        assert [e["payload"]["eventId"] for e in answer["events"]] == ["h2", "h3", "h4"]
        assert answer["reachesBack"] is False
        first = answer["events"][0]
        assert first["event"] == "tick" and first["payload"]["n"] == "h2"
        assert first["position"] == first["payload"]["position"]
        since = answer["events"][0]["position"]
        status, answer = await call(srv.url, "GET",
                                    f"/api/v1/rooms/user:u1/history?since={since}&limit=1")
        assert [e["payload"]["eventId"] for e in answer["events"]] == ["h3"]
        assert (answer["reachesBack"], answer["more"]) == (True, True)


async def test_info_lists_this_instance() -> None:
    async with run_server() as srv, connected(srv.url, token("u1", ["admin"])):
        status, answer = await call(srv.url, "GET", "/api/v1/info")
        assert status == 200
        [me] = answer["instances"]
        assert me["instance"] == answer["instance"]
        assert (me["connections"], me["rooms"]) == (1, 2)


def _claims(jwt: str) -> dict[str, Any]:
    import jwt as pyjwt

    claims: dict[str, Any] = pyjwt.decode(jwt, options={"verify_signature": False})
    return claims


# --- two instances behind one Redis --------------------------------------------------------


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    servers = [ServerProcess({"REALTIME_REDIS_URL": redis_server.url,
                              "REALTIME_PRESENCE_TTL_SECONDS": "3"}) for _ in range(2)]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        await asyncio.sleep(0.3)  # control listeners subscribed
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.kill()


async def test_disconnect_across_instances_within_a_second(
        pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    js = await JsClient(b.url, {"auth": {"token": token("u1")}, "reconnection": True,
                                "timeoutMs": 8000}).start()
    await js.until("connect")
    async with connected(a.url, token("u1")) as on_a, sse(b.url, token("u1")) as sse_b:
        started = time.monotonic()
        status, answer = await call(a.url, "POST", "/api/v1/users/u1/disconnect",
                                    {"reason": "logout"})
        assert status == 200
        assert answer == {"disconnected": 3, "instances": 2, "answered": 2, "complete": True}
        await on_a.wait_disconnected(1)
        await asyncio.wait_for(sse_b.ended.wait(), 1)
        notice = await js.until("disconnect", limit=1)
        assert time.monotonic() - started < 1.0
        assert notice["reason"] == "io server disconnect"
        [told] = [line for line in js.lines if line["type"] == "event"]
        assert told["args"] == [{"reason": "logout", "reconnect": False}]
        await asyncio.sleep(1.0)  # a reconnecting client would have tried by now
        await js.kill()
        assert js.of("reconnect_attempt") == [] and len(js.of("connect")) == 1


async def test_disconnect_with_reconnect_lets_the_official_client_reconnect(
        pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    js = await JsClient(b.url, {"auth": {"token": token("u1")}, "reconnection": True,
                                "timeoutMs": 8000}).start()
    await js.until("connect")
    status, answer = await call(a.url, "POST", "/api/v1/users/u1/disconnect",
                                {"reason": "rebalance", "reconnect": True})
    assert (status, answer["disconnected"]) == (200, 1)
    assert (await js.until("disconnect"))["reason"] == "transport close"
    await js.until("connect")
    await js.kill()
    [told] = [line for line in js.lines if line["type"] == "event"]
    assert told["args"] == [{"reason": "rebalance", "reconnect": True}]


async def test_revocation_holds_on_both_instances(
        pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    jwt = token("u1")
    async with connected(a.url, jwt) as on_a, connected(b.url, jwt) as on_b, \
            connected(b.url, token("u1")) as keeper:
        status, answer = await call(b.url, "POST", "/api/v1/tokens/revoke",
                                    {"jti": _claims(jwt)["jti"]})
        assert (status, answer["disconnected"], answer["instances"]) == (200, 2, 2)
        await on_a.wait_disconnected(1)
        await on_b.wait_disconnected(1)
        for server in (a, b):
            assert (await refused(server.url, jwt))["data"]["code"] == "invalid_token"
            assert await sse_status(server.url, jwt) == 401
        answer = await keeper.call("refresh_token", jwt)
        assert answer["error"] == "invalid_token"


async def test_rooms_history_and_info_across_instances(
        pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    async with connected(a.url, token("u1")) as on_a, connected(b.url, token("u1")) as on_b:
        status, answer = await call(b.url, "POST", "/api/v1/users/u1/rooms",
                                    {"join": ["order:7"]})
        assert (status, answer["connections"]) == (200, 2)
        await publish_to(a.url, push("j1", "news", "order:7"))
        for client in (on_a, on_b):
            await client.wait_for("news")
        await call(a.url, "POST", "/api/v1/users/u1/rooms", {"leave": ["order:7"]})
        await publish_to(b.url, push("j2", "news", "order:7"))
        await publish_to(b.url, push("j3", "mine", "user:u1"))
        for client in (on_a, on_b):
            await client.wait_for("mine")
            assert [p["eventId"] for p in client.named("news")] == ["j1"]
        for server in (a, b):
            status, answer = await call(server.url, "GET", "/api/v1/rooms/order:7/history")
            assert [e["payload"]["eventId"] for e in answer["events"]] == ["j1", "j2"]
            assert answer["reachesBack"] is True
        await asyncio.sleep(1.2)  # one heartbeat (TTL 3 s → every second)
        status, answer = await call(a.url, "GET", "/api/v1/info")
        assert status == 200
        assert len(answer["instances"]) == 2
        assert [i["connections"] for i in answer["instances"]] == [1, 1]


# --- Kafka control topic -------------------------------------------------------------------


async def test_kafka_control_topic_runs_commands_and_dead_letters_bad_ones(
        kafka_broker: KafkaBroker, redis_server: RedisServer) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    control = f"realtime.control.{names.group}"
    await kafka_broker.create_topics([control], 1)
    settings = names.settings(kafka_broker, kafka_control_topic=control,
                              redis_url=redis_server.url)
    async with run_server(**settings) as srv:
        await wait_ready(srv.url)
        jwt = token("u2")
        async with connected(srv.url, token("u1")) as u1, connected(srv.url, jwt) as u2, \
                connected(srv.url, token("u3")) as u3:
            await produce(kafka_broker, control, [
                {"type": "USER_ROOMS", "userId": "u3", "join": ["order:5"]},
                {"type": "DISCONNECT_USER", "userId": "u1", "reason": "banned"},
                {"type": "REVOKE_TOKENS", "jti": _claims(jwt)["jti"]},
                {"type": "DISCONNECT_USER"},
                b"not json",
            ])
            await u1.wait_disconnected(15)
            await u2.wait_disconnected(15)
            assert u1.named("disconnected") == [{"reason": "banned", "reconnect": False}]
            assert u2.named("disconnected") == [{"reason": "token_revoked",
                                                 "reconnect": False}]
            assert (await refused(srv.url, jwt))["data"]["code"] == "invalid_token"
            await srv.publish(push("k1", "news", "order:5"))
            await u3.wait_for("news")
            # a control event on an event topic is not a command
            await produce(kafka_broker, names.publish,
                          [{"id": "x", "type": "DISCONNECT_USER", "userId": "u3"}])
            letters = await read_all(kafka_broker, names.dlq, 3)
            await quiet(0.3)
            assert u3.client.connected and u3.named("disconnected") == []
        reasons = sorted(dlq_headers(letter)["x-dlq-reason"] for letter in letters)
        assert reasons == ["invalid_command", "invalid_json", "unknown_type"]


async def test_disconnecting_a_user_without_connections_says_0() -> None:
    async with run_server() as srv:
        status, answer = await call(srv.url, "POST", "/api/v1/users/nobody/disconnect")
        assert (status, answer["disconnected"]) == (200, 0)
