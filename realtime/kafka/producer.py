"""One aiokafka producer per instance: client requests and dead letters.

``acks=all`` and (by default) idempotence, so a request is either durably on the topic
or the caller gets an error within ``REALTIME_KAFKA_PRODUCE_TIMEOUT`` seconds.

Some Kafka-protocol brokers (Tansu, older or locked-down clusters) refuse InitProducerId,
so an idempotent producer can never start there. Rather than failing every produce (and
stalling every partition with a record to dead-letter), the producer falls back to a
non-idempotent one and says so once, in the log and in ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError

from realtime.kafka.config import client_options
from realtime.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]

NO_IDEMPOTENCE = ("broker does not support idempotent producers; "
                  "set REALTIME_KAFKA_ENABLE_IDEMPOTENCE=false")


async def start_producer(settings: Settings,
                         options: dict[str, Any]) -> tuple[AIOKafkaProducer, str | None]:
    """A started ``acks=all`` producer, and a note when idempotence had to be given up."""
    if not settings.kafka_enable_idempotence:
        return await _started(options, idempotent=False), None
    try:
        return await _started(options, idempotent=True), None
    except BrokerResponseError as exc:
        # The broker answered InitProducerId with an error: it cannot give us a producer id.
        note = f"{NO_IDEMPOTENCE} (InitProducerId: {type(exc).__name__}); producing without it"
        producer = await _started(options, idempotent=False)
        log.warning(note, extra={"error": type(exc).__name__})
        return producer, note


async def _started(options: dict[str, Any], *, idempotent: bool) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=idempotent)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    return producer


class KafkaProducer:
    """Implements :class:`realtime.requests.RequestSink`; starts lazily and retries start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        #: Set when the producer runs without idempotence although it was asked for.
        self.degraded: str | None = None

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                options = client_options(self._settings, "-producer")
                options["request_timeout_ms"] = int(self._settings.kafka_produce_timeout * 1000)
                self._producer, self.degraded = await start_producer(self._settings, options)
        return self._producer

    async def send(self, topic: str, key: bytes | None, value: bytes,
                   headers: Headers | None = None) -> None:
        """Produce and wait for the broker's acknowledgement, bounded by the produce timeout."""
        async with asyncio.timeout(self._settings.kafka_produce_timeout):
            producer = await self._ensure()
            await producer.send_and_wait(topic, value=value, key=key,
                                         headers=list(headers) if headers else None)

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
