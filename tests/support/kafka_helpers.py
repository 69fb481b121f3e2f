"""Helpers for Kafka tests: unique names, readiness waits, produce and read back."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from support.kafka import KafkaBroker
from support.server import ServerProcess

TOPIC_KINDS = ("user", "order", "external", "publish")
_counter = itertools.count()


class KafkaNames:
    """Unique topics and group per test, so tests sharing one broker never interfere."""

    def __init__(self) -> None:
        tag = f"{next(_counter)}-{uuid.uuid4().hex[:6]}"
        self.user = f"api.user.events.processed.{tag}"
        self.order = f"api.order.events.processed.{tag}"
        self.external = f"external.system.responses.{tag}"
        self.publish = f"realtime.publish.{tag}"
        self.requests = f"api.user.events.realtime.{tag}"
        self.dlq = f"realtime.dlq.{tag}"
        self.group = f"realtime-test-{tag}"

    @property
    def topics(self) -> list[str]:
        return [self.user, self.order, self.external, self.publish]

    async def create(self, broker: KafkaBroker, partitions: int = 1) -> None:
        await broker.create_topics(self.topics, partitions)
        await broker.create_topics([self.requests, self.dlq], 1)

    def settings(self, broker: KafkaBroker, **extra: Any) -> dict[str, Any]:
        return {"kafka_bootstrap": broker.bootstrap, "kafka_topics": self.topics,
                "kafka_group_id": self.group, "kafka_request_topic": self.requests,
                "kafka_dlq_topic": self.dlq, "kafka_enable_idempotence": False, **extra}

    def env(self, broker: KafkaBroker, **extra: str) -> dict[str, str]:
        return {"REALTIME_KAFKA_BOOTSTRAP": broker.bootstrap,
                "REALTIME_KAFKA_TOPICS": ",".join(self.topics),
                "REALTIME_KAFKA_GROUP_ID": self.group,
                "REALTIME_KAFKA_REQUEST_TOPIC": self.requests,
                "REALTIME_KAFKA_DLQ_TOPIC": self.dlq,
                "REALTIME_KAFKA_ENABLE_IDEMPOTENCE": "false", **extra}


async def readyz(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return response.status, await response.json()


async def wait_ready(url: str, ready: bool = True, limit: float = 30.0) -> Any:
    """Poll /readyz until it reports ``ready`` (consumer joined and assigned)."""
    body: Any = None
    async with asyncio.timeout(limit):
        while True:
            try:
                status, body = await readyz(url)
                if (status == 200) == ready:
                    return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def produce(broker: KafkaBroker, topic: str, values: list[Any],
                  key: bytes | None = None) -> None:
    """Produce values (dicts are JSON-encoded, bytes sent as they are)."""
    producer = broker.producer()
    await producer.start()
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            await producer.send_and_wait(topic, raw, key=key)
    finally:
        await producer.stop()


async def read_all(broker: KafkaBroker, topic: str, expect: int,
                   limit: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning (no group) until ``expect`` records arrived."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        await consumer.topics()  # fetch metadata
        partitions = consumer.partitions_for_topic(topic) or {0}
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        async with asyncio.timeout(limit):
            while len(records) < expect:
                batch = await consumer.getmany(timeout_ms=200)
                for recs in batch.values():
                    records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def start_ready(*servers: ServerProcess) -> None:
    """Start server processes together and wait until each reports ready."""
    await asyncio.gather(*(server.start() for server in servers))
    for server in servers:
        await wait_ready(server.url, limit=60)
