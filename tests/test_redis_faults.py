"""The Redis bus under faults: failed publishes are errors, the listener comes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from realtime.bus import BusError, Message
from realtime.bus.redis import RedisBus
from realtime.routing import Delivery
from support.clients import connected
from support.kafka_helpers import wait_ready
from support.logs import captured_logs
from support.redis_server import RedisServer
from support.server import run_server, token


@contextlib.asynccontextmanager
async def listening(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBus, list[str]]]:
    """A connected Redis bus whose local room ``user:1`` records the event ids it gets."""
    bus = RedisBus(redis_server.url)
    received: list[str] = []

    async def listener(messages: list[Message]) -> None:
        received.extend(message.event_id for message in messages)

    bus.subscribe(listener)
    bus.interest.add("user:1")
    await bus.start()
    try:
        async with asyncio.timeout(5):
            while not bus.connected:
                await asyncio.sleep(0.01)
        yield bus, received
    finally:
        await bus.close()


async def test_publish_fails_loudly_and_listener_survives_restart(
        redis_server: RedisServer) -> None:
    async with listening(redis_server) as (bus, received):
        await bus.publish("before", [Delivery("e", ("user:1",), {})])
        async with asyncio.timeout(5):  # delivered before the outage begins
            while "before" not in received:
                await asyncio.sleep(0.01)
        redis_server.kill()
        with pytest.raises(BusError):
            await bus.publish("during", [Delivery("e", ("user:1",), {})])
        async with asyncio.timeout(10):
            while bus.connected:
                await asyncio.sleep(0.05)
        assert bus.status()[0] is False
        redis_server.start()
        async with asyncio.timeout(15):
            while not bus.connected:
                await asyncio.sleep(0.05)
        await bus.publish("after", [Delivery("e", ("user:1",), {})])
        async with asyncio.timeout(5):
            while "after" not in received:
                await asyncio.sleep(0.05)
        assert received == ["before", "after"] and bus.reconnects >= 1


async def test_server_readiness_and_http_503_during_redis_outage(
        redis_server: RedisServer) -> None:
    async with run_server(redis_url=redis_server.url) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            status, _ = await srv.publish({"id": "1", "type": "PUSH", "event": "e",
                                           "rooms": ["user:u1"]})
            assert status == 202
            first = (await client.wait_for("e"))[0]
            redis_server.kill()
            body = await wait_ready(srv.url, ready=False, limit=15)
            assert "redis" in body["checks"]["bus"]
            status, body = await srv.publish({"id": "2", "type": "PUSH", "event": "e",
                                              "rooms": ["user:u1"]})
            assert status == 503 and body["error"]["code"] == "unavailable"
            redis_server.start()  # empty: history and epoch are gone
            await wait_ready(srv.url, limit=20)
            assert client.client.connected
            status, _ = await srv.publish({"id": "3", "type": "PUSH", "event": "e",
                                           "rooms": ["user:u1"]})
            assert status == 202
            assert [e["eventId"] for e in await client.wait_for("e", count=2)] == ["1", "3"]
            # the gap across the restart cannot be served: the client is told so
            answer = await client.call("resume", {"position": first["position"]})
            assert answer["recovered"] is False


async def test_a_foreign_message_on_the_bus_channel_is_dropped_not_a_lost_connection(
        redis_server: RedisServer) -> None:
    async with listening(redis_server) as (bus, received):
        with captured_logs() as logs:
            for junk in (b"hello", b"abc 12\n[1]\n{}", b"e 1\nnot json\nbody", b""):
                await bus.redis.publish(bus.channel, junk)
            await bus.publish("real", [Delivery("e", ("user:1",), {})])
            async with asyncio.timeout(5):
                while "real" not in received:
                    await asyncio.sleep(0.01)
        assert received == ["real"] and bus.reconnects == 0
        dropped = [r for r in logs.records if "malformed message" in r.getMessage()]
        assert len(dropped) == 4 and not any(r.exc_info for r in logs.records)
