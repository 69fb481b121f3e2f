"""Kafka faults: broker outage while serving, and a server killed mid-stream."""

from __future__ import annotations

import asyncio
import time

from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, readyz, wait_ready
from support.server import ServerProcess, run_server, token


async def test_broker_outage_keeps_clients_and_recovers() -> None:
    broker = KafkaBroker().start()  # our own broker: this test kills it
    try:
        names = KafkaNames()
        await names.create(broker)
        async with run_server(**names.settings(broker, kafka_produce_timeout=2.0)) as srv:
            await wait_ready(srv.url)
            async with connected(srv.url, token("u1")) as client:
                await produce(broker, names.publish, [
                    {"id": "before", "type": "PUSH", "event": "e", "rooms": ["user:u1"]}])
                await client.wait_for("e", timeout=15)

                broker.kill()
                body = await wait_ready(srv.url, ready=False, limit=20)
                assert "kafka" in body["checks"] and "unreachable" in body["checks"]["kafka"]
                started = time.monotonic()
                answer = await client.call("user_update_request", {
                    "userId": "u1", "updates": {"a": 1}, "operationId": "op-down"}, timeout=10)
                assert answer["ok"] is False and answer["error"] == "unavailable"
                assert answer["operationId"] == "op-down"
                assert time.monotonic() - started < 4.0  # produce timeout 2 s + margin
                [error] = await client.wait_for("error")
                assert error["operationId"] == "op-down" and error["message"]
                assert client.client.connected  # Socket.IO clients are kept

                broker.start()  # same port; memory storage starts empty
                await names.create(broker)
                await wait_ready(srv.url, limit=60)
                # The restarted Tansu has an empty log (memory storage) and the group starts
                # at the end, so probe until consumption has resumed.
                async with asyncio.timeout(30):
                    n = 0
                    while len(client.named("e")) < 2:
                        n += 1
                        await produce(broker, names.publish, [
                            {"id": f"after-{n}", "type": "PUSH", "event": "e",
                             "rooms": ["user:u1"]}])
                        await asyncio.sleep(0.5)
                events = client.named("e")
                assert events[0]["eventId"] == "before"
                assert events[1]["eventId"].startswith("after-")
                status, _ = await readyz(srv.url)
                assert status == 200
    finally:
        broker.kill()


async def test_killed_server_loses_nothing(kafka_broker: KafkaBroker) -> None:
    """kill -9 mid-stream, restart with the same group: every event arrives at least once
    and, de-duplicated by eventId on the client, exactly once; nothing is skipped."""
    names = KafkaNames()
    await names.create(kafka_broker, partitions=2)
    env = names.env(kafka_broker)
    total, seen = 300, []
    first = await ServerProcess(env).start()
    try:
        await wait_ready(first.url)
        producer = kafka_broker.producer()
        await producer.start()

        async def produce_stream() -> None:
            for n in range(total):
                value = (b'{"id":"s%d","type":"PUSH","event":"tick","rooms":["user:u1"],'
                         b'"data":{"n":%d}}' % (n, n))
                await producer.send_and_wait(names.publish, value, key=str(n % 7).encode())
                await asyncio.sleep(0.01)

        async with connected(first.url, token("u1")) as before:
            streaming = asyncio.create_task(produce_stream())
            await before.wait_for("tick", count=60, timeout=20)
            first.kill()  # kill -9, no graceful anything
            seen.extend(before.named("tick"))
        second = await ServerProcess(env, port=first.port).start()
        try:
            async with connected(second.url, token("u1")) as after:
                await streaming
                await producer.stop()
                async with asyncio.timeout(60):
                    while len({e["eventId"] for e in seen + after.named("tick")}) < total:
                        await asyncio.sleep(0.2)
                seen.extend(after.named("tick"))
        finally:
            second.kill()
    finally:
        first.kill()
    ids = [e["eventId"] for e in seen]
    unique = set(ids)
    missing = {f"s{n}" for n in range(total)} - unique
    print(f"\nkill test: produced={total} received={len(ids)} unique={len(unique)} "
          f"missing={len(missing)} redelivered={len(ids) - len(unique)}")
    assert not missing
