"""One aiokafka producer per instance: client requests and dead letters.

``acks=all`` and (by default) idempotence, so a request is either durably on the topic
or the caller gets an error within ``REALTIME_KAFKA_PRODUCE_TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from realtime.kafka.config import client_options
from realtime.settings import Settings

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]


class KafkaProducer:
    """Implements :class:`realtime.requests.RequestSink`; starts lazily and retries start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is None:
                settings = self._settings
                options = client_options(settings, "-producer")
                options["request_timeout_ms"] = int(settings.kafka_produce_timeout * 1000)
                producer = AIOKafkaProducer(
                    **options, acks="all", enable_idempotence=settings.kafka_enable_idempotence)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
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
