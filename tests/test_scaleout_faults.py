"""Scale-out under faults: Redis restarting mid-stream, and consumer-group rebalances."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import orjson

from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, start_ready, wait_ready
from support.redis_server import RedisServer
from support.server import ServerProcess, token


async def steady_stream(broker: KafkaBroker, topic: str, count: int, rate: float,
                        prefix: str) -> None:
    producer = broker.producer()
    await producer.start()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            event = {"id": f"{prefix}{n}", "type": "PUSH", "event": "tick",
                     "rooms": ["user:watcher"], "data": {"n": n}}
            await producer.send(topic, orjson.dumps(event), key=str(n % 4).encode())
            delay = start + (n + 1) / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()


async def all_ticks(received: Any, count: int, prefix: str, limit: float = 60.0) -> None:
    want = {f"{prefix}{n}" for n in range(count)}
    async with asyncio.timeout(limit):
        while not want <= {t["eventId"] for t in received()}:
            await asyncio.sleep(0.2)


async def test_redis_restart_mid_stream_loses_no_consumed_event(
        redis_server: RedisServer, kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker, partitions=2)
    env = {"REALTIME_REDIS_URL": redis_server.url, **names.env(kafka_broker)}
    a, b = ServerProcess(env), ServerProcess(env)
    try:
        await start_ready(a, b)
        async with connected(a.url, token("watcher")) as live, \
                connected(b.url, token("watcher")) as leaver:
            streaming = asyncio.create_task(
                steady_stream(kafka_broker, names.publish, 600, 100.0, "r"))
            await live.wait_for("tick", count=100, timeout=20)
            await leaver.wait_for("tick", count=100, timeout=20)
            last_seen = leaver.named("tick")[-1]["position"]
            await leaver.client.disconnect()  # away during the outage
            redis_server.kill()
            for server in (a, b):
                body = await wait_ready(server.url, ready=False, limit=15)
                assert body["ready"] is False
            await asyncio.sleep(2.0)  # events keep arriving; their offsets are held
            redis_server.start()
            await wait_ready(a.url, limit=30)
            await wait_ready(b.url, limit=30)
            await streaming
            await all_ticks(lambda: live.named("tick"), 600, "r")
            assert live.client.connected
            # the leaver's gap crosses the Redis restart: it is told, not silently skipped
            async with connected(b.url, auth={"token": token("watcher"),
                                              "position": last_seen}) as back:
                assert (await back.wait_for("recovered"))[0] == {
                    "recovered": False, "orders": [], "ordersRestored": True}
    finally:
        a.kill()
        b.kill()


async def test_rebalance_add_then_remove_instance_loses_nothing(
        redis_server: RedisServer, kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker, partitions=4)
    env = {"REALTIME_REDIS_URL": redis_server.url, **names.env(kafka_broker)}
    first = await ServerProcess(env).start()
    second = ServerProcess(env)
    try:
        await wait_ready(first.url, limit=60)
        async with connected(first.url, token("watcher")) as client:
            streaming = asyncio.create_task(
                steady_stream(kafka_broker, names.publish, 900, 60.0, "b"))
            await client.wait_for("tick", count=100, timeout=20)
            await second.start()  # instance added: the group rebalances
            await wait_ready(second.url, limit=60)
            await client.wait_for("tick", count=400, timeout=30)
        async with connected(second.url, token("watcher"), auth={
                "token": token("watcher"),
                "position": client.named("tick")[-1]["position"]}) as moved:
            assert first.proc is not None
            first.proc.send_signal(signal.SIGTERM)  # instance removed
            assert await asyncio.to_thread(first.proc.wait, 20) == 0
            await streaming
            await all_ticks(lambda: client.named("tick") + moved.named("tick"), 900, "b")
            ids = [t["eventId"] for t in client.named("tick") + moved.named("tick")]
            assert len(ids) == len(set(ids)) == 900
    finally:
        first.kill()
        second.kill()
