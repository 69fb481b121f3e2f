"""Helpers for Kafka tests: unique names, readiness waits, produce and read back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

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


class TopicTail:
    """Reads a topic from its beginning in the background (no group), keeping every record."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._topic = topic
        self._consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap,
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        await self._consumer.topics()  # fetch metadata
        partitions = self._consumer.partitions_for_topic(self._topic) or {0}
        self._consumer.assign([TopicPartition(self._topic, p) for p in partitions])
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)
            if batch:
                self._changed.set()

    async def wait(self, done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
                   limit: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
        """Wait until ``done(records)`` holds; return the records read so far."""
        async with asyncio.timeout(limit):
            while not done(self.records):
                self._changed.clear()
                await self._changed.wait()
        return self.records


async def read_all(broker: KafkaBroker, topic: str, expect: int,
                   limit: float = 15.0) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning (no group) until ``expect`` records arrived."""
    async with TopicTail(broker, topic) as tail:
        return list(await tail.wait(lambda records: len(records) >= expect, limit))


async def start_ready(*servers: ServerProcess) -> None:
    """Start server processes together and wait until each reports ready."""
    await asyncio.gather(*(server.start() for server in servers))
    for server in servers:
        await wait_ready(server.url, limit=60)


def dlq_headers(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    """A dead letter's headers as text."""
    return {k: v.decode(errors="replace") for k, v in record.headers}


async def metric(url: str, name: str, **labels: str) -> float:
    """One sample of the server's ``/metrics`` (0 when the series does not exist yet)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
