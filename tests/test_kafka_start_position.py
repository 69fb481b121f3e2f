"""Starting offsets: an instance killed before a partition's first record skips nothing."""

from __future__ import annotations

import asyncio

from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, metric, produce, wait_ready
from support.server import ServerProcess, token

COUNT = 20


async def test_killed_before_the_first_record_then_restarted_consumes_everything_once(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    env = names.env(kafka_broker)  # auto_offset_reset left at its default, "latest"
    first = await ServerProcess(env).start()
    try:
        await wait_ready(first.url)  # joined, partitions assigned, no record seen yet
        first.kill()  # kill -9: nothing is committed on the way out
    finally:
        first.kill()
    await produce(kafka_broker, names.order, [
        {"id": f"o{n}", "type": "ORDER_STATUS_UPDATED", "orderId": "o-1", "userId": "u1",
         "newStatus": f"S{n}"} for n in range(COUNT)])
    second = await ServerProcess(env, port=first.port).start()
    try:
        await wait_ready(second.url, limit=60)
        consumed = "realtime_kafka_messages_consumed_total"
        async with asyncio.timeout(30):
            while await metric(second.url, consumed, topic=names.order) < COUNT:
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything consumed twice would be counted by now
        assert await metric(second.url, consumed, topic=names.order) == COUNT
        assert await metric(second.url, "realtime_events_routed_total",
                            type="ORDER_STATUS_UPDATED") == COUNT
        assert await metric(second.url, "realtime_events_deduplicated_total") == 0
        # ... and clients see the outcome: the owner learned from the events, latest status.
        async with connected(second.url, token("u1")) as owner:
            answer = await owner.call("subscribe_order_updates", "o-1")
            assert answer["ok"] is True and answer["status"] == f"S{COUNT - 1}", answer
    finally:
        second.kill()
