"""Several `realtime serve` processes sharing Redis (and one Kafka group) act as one."""

from __future__ import annotations

from support.clients import connected, quiet
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, start_ready
from support.redis_server import RedisServer
from support.server import ServerProcess, publish_to, token
from support.sse import sse


async def test_publish_on_one_instance_reaches_clients_on_all(
        redis_server: RedisServer, kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker, partitions=1)
    env = {"REALTIME_REDIS_URL": redis_server.url, **names.env(kafka_broker)}
    servers = [ServerProcess(env) for _ in range(3)]
    try:
        await start_ready(*servers)
        a, b, c = servers
        async with connected(a.url, token("u1")) as on_a, \
                connected(b.url, token("u1")) as on_b, \
                connected(c.url, token("boss", ["admin"])) as on_c, \
                sse(a.url, token("u1")) as sse_a, sse(b.url, token("u1")) as sse_b, \
                sse(c.url, token("u1")) as sse_c:
            # HTTP publish on B reaches A (and B, and C's admin room)
            status, _ = await publish_to(b.url, {"id": "h1", "type": "PUSH", "event": "hello",
                                                 "rooms": ["user:u1", "role:admin"]})
            assert status == 202
            # Kafka: whichever instance owns the partition consumes it; all deliver it
            await produce(kafka_broker, names.user, [
                {"id": "k1", "type": "USER_UPDATED", "userId": "u1", "updates": {"a": 1}}])
            for client in (on_a, on_b, on_c):
                await client.wait_for("hello", timeout=10)
            await on_a.wait_for("user_updated", timeout=15)
            await on_b.wait_for("user_updated", timeout=15)
            await on_c.wait_for("user_updated_admin", timeout=15)
            await quiet(0.5)
            for client in (on_a, on_b, on_c):
                names_seen = [e for e, _ in client.events]
                assert names_seen.count("hello") == 1
            assert [e for e, _ in on_a.events].count("user_updated") == 1
            # SSE clients on every instance get the Kafka event once, whoever consumed it
            for stream in (sse_a, sse_b, sse_c):
                assert [u["eventId"] for u in await stream.wait_for("user_updated")] == ["k1"]
                assert [h["eventId"] for h in stream.named("hello")] == ["h1"]
            assert [e for e, _ in on_b.events].count("user_updated") == 1
    finally:
        for server in servers:
            server.kill()
