"""Dead letters: writing one (the consumer), listing and replaying them (``realtime dlq``).

A dead letter keeps the original key and bytes; its ``x-dlq-*`` headers say why it was
refused and where it came from, so replay can put it back on its source topic once the
producer (or the routing table) is fixed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from realtime.kafka.config import client_options
from realtime.kafka.failures import Refusal
from realtime.kafka.producer import KafkaProducer, start_producer
from realtime.settings import Settings


def dead_letter_headers(record: ConsumerRecord[bytes, bytes],
                        refusal: Refusal) -> list[tuple[str, bytes]]:
    """Original headers plus where the record came from and why it was refused."""
    return [
        *[(k, v) for k, v in (record.headers or ()) if not k.startswith("x-dlq-")],
        ("x-dlq-reason", refusal.reason.encode()),
        ("x-dlq-error", refusal.message.encode()),
        ("x-dlq-source-topic", record.topic.encode()),
        ("x-dlq-source-partition", str(record.partition).encode()),
        ("x-dlq-source-offset", str(record.offset).encode()),
        ("x-dlq-source-timestamp", str(record.timestamp).encode()),
    ]


async def send_dead_letter(producer: KafkaProducer, topic: str,
                           record: ConsumerRecord[bytes, bytes], refusal: Refusal) -> None:
    """Put ``record`` on the dead-letter topic.

    A record too big to fit there with its headers is dead-lettered without its value
    (``x-dlq-value-dropped`` gives the size) rather than retried forever.
    """
    headers = dead_letter_headers(record, refusal)
    value = record.value or b""
    try:
        await producer.send(topic, record.key, value, headers)
    except MessageSizeTooLargeError:
        await producer.send(topic, record.key, b"",
                            [*headers, ("x-dlq-value-dropped", str(len(value)).encode())])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "reason": self.headers.get("x-dlq-reason"),
            "error": self.headers.get("x-dlq-error"),
            "source": {
                "topic": self.headers.get("x-dlq-source-topic"),
                "partition": self.headers.get("x-dlq-source-partition"),
                "offset": self.headers.get("x-dlq-source-offset"),
            },
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "value": self.value.decode(errors="replace"),
        }


async def read_dead_letters(settings: Settings, limit: int = 1000) -> list[DeadLetter]:
    """Everything currently on the DLQ topic (up to ``limit``), oldest first per partition."""
    consumer = AIOKafkaConsumer(**client_options(settings, "-dlq"), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()  # fetch metadata
        partitions = consumer.partitions_for_topic(settings.kafka_dlq_topic) or set()
        tps = [TopicPartition(settings.kafka_dlq_topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        async with asyncio.timeout(30):
            while len(letters) < limit and await _behind(consumer, ends):
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    letters.extend(
                        DeadLetter(r.partition, r.offset, r.key, r.value or b"",
                                   {k: v.decode(errors="replace") for k, v in r.headers})
                        for r in records)
        return letters[:limit]
    finally:
        await consumer.stop()


async def replay_dead_letters(settings: Settings, refs: list[str]) -> list[str]:
    """Re-publish the dead letters named ``partition:offset`` (or ``offset``) to their source."""
    wanted = {ref if ":" in ref else f"0:{ref}" for ref in refs}
    letters = [d for d in await read_dead_letters(settings, limit=1_000_000) if d.ref in wanted]
    missing = wanted - {d.ref for d in letters}
    if missing:
        raise LookupError(f"no dead letter at {', '.join(sorted(missing))}")
    producer, _ = await start_producer(settings, client_options(settings, "-dlq"))
    try:
        done = []
        for letter in letters:
            topic = letter.headers.get("x-dlq-source-topic")
            if not topic:
                raise LookupError(f"dead letter {letter.ref} has no source topic header")
            replayed = [("x-realtime-replayed-from", letter.ref.encode())]
            await producer.send_and_wait(topic, letter.value, key=letter.key, headers=replayed)
            done.append(f"{letter.ref} -> {topic}")
        return done
    finally:
        await producer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """True while some partition's position is before the end offset read at start."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False
