"""Kafka ingest: a consumer-group member that feeds processed events to the pipeline.

Delivery is at-least-once. Each assigned partition has one worker that handles its
records strictly in order; an offset is committed only after its record was published
to the bus (or dead-lettered). A worker takes every record queued for it (up to
``MAX_BATCH``: what one fetch brought) and publishes the good ones in one bus call (one
Redis script call), in order; a batch the bus refuses for a reason other than an outage
is published record by record, so only the culprit is dead-lettered. An outage (bus,
Redis or broker unreachable) is retried with capped exponential backoff and jitter while
that partition is paused; other partitions and connected clients are not affected. A
failure that belongs to the record itself (invalid, unroutable, unencodable, or anything
unforeseen) dead-letters it with a reason and the partition moves on: a bad record never
stalls a partition. Per-partition queues are bounded: a full queue pauses fetching for
that partition (back-pressure).

A partition assigned without a committed offset gets its starting position (resolved by
``auto_offset_reset``) committed before the instance reports ready, so a crash before
its first record cannot make a restart resolve "latest" again and skip records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.client import AIOKafkaClient

from realtime.ingest.pipeline import Ingestor
from realtime.kafka.config import client_options
from realtime.kafka.dlq import send_dead_letter
from realtime.kafka.failures import Refusal, is_transient, refusal_for
from realtime.kafka.producer import KafkaProducer
from realtime.metrics import Metrics
from realtime.routing import RoutingError
from realtime.routing.shape import text_within
from realtime.settings import Settings
from realtime.tasks import cancel_task

log = logging.getLogger(__name__)
T = TypeVar("T")

BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
COMMIT_INTERVAL = 0.2
#: Records published in one bus call at most (a fetch brings up to 500).
MAX_BATCH = 500
HEALTH_INTERVAL = 2.0


def backoff_delays(start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> Any:
    """Capped exponential backoff with full jitter: 0..start, 0..2*start, ... 0..cap."""
    delay = start
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(cap, delay * 2)


@dataclass(eq=False)
class PartitionWorker:
    """Handles one partition's records in order; remembers the next offset to commit."""

    tp: TopicPartition
    queue: asyncio.Queue[ConsumerRecord[bytes, bytes]]
    task: asyncio.Task[None] | None = None
    done_offset: int | None = None  # next offset to commit (last handled + 1)
    committed_offset: int | None = None
    first_fetched: int | None = None  # offset of the first record queued for this worker
    started: bool = False  # a committed starting position exists for this partition
    retrying: bool = False


class KafkaIngest:
    """Consumer group member: fetch → per-partition workers → pipeline → commit."""

    def __init__(self, settings: Settings, ingestor: Ingestor, producer: KafkaProducer,
                 metrics: Metrics, *,
                 control: Callable[[object], Awaitable[None]] | None = None) -> None:
        """``control`` runs the records of ``REALTIME_KAFKA_CONTROL_TOPIC`` (when set)."""
        self.settings = settings
        self.control = control if settings.kafka_control_topic else None
        self.ingestor = ingestor
        self.producer = producer
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self.workers: dict[TopicPartition, PartitionWorker] = {}
        self.assigned = False
        self.reachable = False
        self.last_error = "starting"
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._queue_size = max(1, settings.kafka_max_in_flight)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start in the background: the server serves clients even while Kafka is down."""
        self._tasks = [asyncio.create_task(self._run(), name="kafka-consume"),
                       asyncio.create_task(self._watch_broker(), name="kafka-health")]

    async def stop(self) -> None:
        """Finish in-flight records, commit, and leave the group cleanly."""
        self._stopping = True
        consumer = self.consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        await self._drain_workers(list(self.workers.values()), limit=5.0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self._commit()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await cancel_task(task)
        for worker in self.workers.values():
            await cancel_task(worker.task)
        self.workers.clear()
        if consumer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10.0):
                    await consumer.stop()

    async def crash_for_test(self) -> None:
        """Simulate a crash: drop everything without committing (tests only)."""
        self._stopping = True
        for task in self._tasks:
            await cancel_task(task)
        consumer = self.consumer
        self.consumer = None
        self.workers.clear()
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()

    def status(self) -> tuple[bool, str]:
        """Ready once it joined the group and has its assignment, while the broker answers."""
        if not self.reachable:
            return False, f"kafka unreachable: {self.last_error}"
        if not self.assigned:
            return False, "kafka: waiting for partition assignment"
        retrying = [f"{w.tp.topic}/{w.tp.partition}" for w in self.workers.values() if w.retrying]
        if retrying:
            return False, f"kafka: retrying {', '.join(retrying)}: {self.last_error}"
        if not all(w.started for w in self.workers.values()):
            return False, "kafka: committing starting offsets"
        note = f"; {self.producer.degraded}" if self.producer.degraded else ""
        return True, f"kafka: {len(self.workers)} partition(s) assigned{note}"

    # --- consuming -------------------------------------------------------------------

    async def _run(self) -> None:
        delays = backoff_delays()
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.assigned = False
                log.warning("kafka consumer failed, restarting: %s", self.last_error)
                await self._reset_consumer()
                await asyncio.sleep(next(delays))

    async def _consume(self) -> None:
        settings = self.settings
        consumer = AIOKafkaConsumer(
            **client_options(settings, "-consumer"),
            group_id=settings.kafka_group_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.kafka_auto_offset_reset,
            max_poll_records=500,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        self.consumer = consumer
        await consumer.start()
        topics = list(settings.kafka_topics)
        if self.control is not None and settings.kafka_control_topic not in topics:
            topics.append(str(settings.kafka_control_topic))
        consumer.subscribe(topics, listener=_Rebalance(self))
        last_commit = asyncio.get_running_loop().time()
        while not self._stopping:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            for tp, records in batch.items():
                worker = self.workers.get(tp)
                if worker is None:
                    continue  # revoked meanwhile; the new owner will fetch these
                if worker.first_fetched is None and records:
                    worker.first_fetched = records[0].offset
                for record in records:
                    worker.queue.put_nowait(record)
                if worker.queue.qsize() >= self._queue_size:
                    consumer.pause(tp)
            self._update_lag(consumer)
            now = asyncio.get_running_loop().time()
            if now - last_commit >= COMMIT_INTERVAL:
                last_commit = now
                await self._commit()

    async def _reset_consumer(self) -> None:
        for worker in list(self.workers.values()):
            await cancel_task(worker.task)
        self.workers.clear()
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            self.consumer = None

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp, worker in self.workers.items():
            high = consumer.highwater(tp)
            if high is not None and worker.done_offset is not None:
                self.metrics.kafka_lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - worker.done_offset))

    async def _commit(self, only: list[PartitionWorker] | None = None) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        offsets = {
            w.tp: w.done_offset for w in (only if only is not None else self.workers.values())
            if w.done_offset is not None and w.done_offset != w.committed_offset
        }
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:
            log.warning("offset commit failed (will retry): %s", exc)
            return
        for worker in self.workers.values():
            if worker.tp in offsets:
                worker.committed_offset = offsets[worker.tp]

    # --- partitions --------------------------------------------------------------------

    def _assigned(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            if tp not in self.workers:
                worker = PartitionWorker(tp, asyncio.Queue())
                worker.task = asyncio.create_task(self._work(worker), name=f"kafka-{tp}")
                self.workers[tp] = worker
        self.assigned = True

    async def _revoked(self, partitions: set[TopicPartition]) -> None:
        """Finish the record in hand, commit, and drop queued ones (the new owner refetches)."""
        workers = [self.workers[tp] for tp in partitions if tp in self.workers]
        for worker in workers:
            while not worker.queue.empty():
                worker.queue.get_nowait()
                worker.queue.task_done()
        await self._drain_workers(workers, limit=5.0)
        await self._commit(workers)
        for worker in workers:
            await cancel_task(worker.task)
            self.workers.pop(worker.tp, None)

    async def _drain_workers(self, workers: list[PartitionWorker], limit: float) -> None:
        """Wait (at most ``limit`` seconds) until the workers handled everything queued."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                for worker in workers:
                    await worker.queue.join()

    async def _work(self, worker: PartitionWorker) -> None:
        await self._retrying(worker, functools.partial(self._start_position, worker))
        self._resume_if_drained(worker)
        control = self.control is not None and worker.tp.topic == self.settings.kafka_control_topic
        limit = 1 if control else MAX_BATCH  # a command runs once: never retried with others
        hand_off = self._hand_off_control if control else self._hand_off
        consumed = self.metrics.kafka_consumed.labels(worker.tp.topic)
        while True:
            records = [await worker.queue.get()]
            while len(records) < limit and not worker.queue.empty():
                records.append(worker.queue.get_nowait())
            try:
                consumed.inc(len(records))
                refusals = await self._retrying(worker, functools.partial(hand_off, records))
                for record, refusal in zip(records, refusals, strict=True):
                    if refusal is not None:
                        await self._retrying(
                            worker, functools.partial(self._dead_letter, record, refusal))
                worker.done_offset = records[-1].offset + 1
            finally:
                for _ in records:
                    worker.queue.task_done()
            self._resume_if_drained(worker)

    def _resume_if_drained(self, worker: PartitionWorker) -> None:
        consumer = self.consumer
        if (consumer is not None and worker.queue.qsize() < self._queue_size // 2
                and worker.tp in consumer.paused() and not self._stopping):
            consumer.resume(worker.tp)

    async def _start_position(self, worker: PartitionWorker) -> None:
        """Commit where this partition starts if the group has no offset for it yet."""
        consumer = self.consumer
        if consumer is None:
            raise RuntimeError("consumer stopped")
        if await consumer.committed(worker.tp) is None:
            start = await consumer.position(worker.tp)
            if worker.first_fetched is not None:  # records fetched meanwhile are still queued
                start = min(start, worker.first_fetched)
            await consumer.commit({worker.tp: start})
            worker.committed_offset = start
            log.info("no committed offset for %s: committed start %d", worker.tp, start,
                     extra={"topic": worker.tp.topic, "partition": worker.tp.partition,
                            "offset": start})
        worker.started = True

    async def _retrying(self, worker: PartitionWorker, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds; while failing, the partition is paused."""
        delays = backoff_delays()
        while True:
            try:
                result = await attempt()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.metrics.kafka_retries.inc()
                if not worker.retrying:
                    log.warning("hand-off failed on %s, retrying: %s", worker.tp, self.last_error)
                worker.retrying = True
                if self.consumer is not None and worker.tp in self.consumer.assignment():
                    self.consumer.pause(worker.tp)
                await asyncio.sleep(next(delays))
                continue
            if worker.retrying:
                worker.retrying = False
                log.info("hand-off recovered on %s", worker.tp)
            return result

    async def _hand_off(self, records: list[ConsumerRecord[bytes, bytes]]) -> list[Refusal | None]:
        """Publish the good records in one bus call; an outage raises (retry them all; the
        bus de-duplicates what was published), a bad record gets its refusal."""
        refusals: list[Refusal | None] = [None] * len(records)
        events: list[object] = []
        decoded: list[int] = []
        for index, record in enumerate(records):
            event = self._decode(record)
            if isinstance(event, Refusal):
                refusals[index] = event
            else:
                events.append(event)
                decoded.append(index)
        shallow = text_within(b",".join([records[index].value or b"" for index in decoded]))
        good, refused = self.ingestor.validate_many(events, "kafka", shallow)
        for position, error in refused:  # counted by the pipeline
            refusals[decoded[position]] = refusal_for(error)
            decoded[position] = -1
        routed = list(zip([index for index in decoded if index >= 0], good, strict=True))
        try:
            await self.ingestor.publish_many([event for _, event in routed])
        except Exception as exc:
            if is_transient(exc):
                raise
            for index, event in routed:  # one by one: only the culprit is refused
                try:
                    await self.ingestor.publish(event)
                except Exception as single:
                    refusals[index] = self._refusal(single)
        return refusals

    async def _hand_off_control(self, records: list[ConsumerRecord[bytes, bytes]]
                                ) -> list[Refusal | None]:
        """Run one control record; an outage raises (retry), a bad record gets its refusal."""
        [record] = records
        event = self._decode(record)
        if isinstance(event, Refusal):
            return [event]
        try:
            await self._control(event)
        except RoutingError as exc:  # counted by _control
            return [refusal_for(exc)]
        except Exception as exc:
            return [self._refusal(exc)]
        return [None]

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> object:
        """The record's event, or the :class:`Refusal` of a value that is not one."""
        try:
            return self.ingestor.decode(record.value)
        except RoutingError as exc:  # counted here: the pipeline never sees it
            self.metrics.events_rejected.labels("kafka", exc.reason).inc()
            return refusal_for(exc)

    def _refusal(self, exc: Exception) -> Refusal:
        """Raise an outage again (the caller retries); count and refuse anything else."""
        if is_transient(exc):
            raise exc
        self.metrics.events_rejected.labels("kafka", "internal_error").inc()
        return refusal_for(exc)

    async def _control(self, event: object) -> None:
        """A control command; a refused one is counted here (the pipeline never saw it)."""
        assert self.control is not None
        try:
            await self.control(event)
        except RoutingError as exc:
            self.metrics.events_rejected.labels("kafka", exc.reason).inc()
            raise

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], refusal: Refusal) -> None:
        await send_dead_letter(self.producer, self.settings.kafka_dlq_topic, record, refusal)
        where = f"{record.topic}/{record.partition}@{record.offset}"
        extra = {"topic": record.topic, "partition": record.partition,
                 "offset": record.offset, "reason": refusal.reason}
        if refusal.unexpected:
            log.warning("dead-lettered %s: %s: %s", where, refusal.reason, refusal.message,
                        extra=extra)
        else:
            log.info("dead-lettered %s: %s", where, refusal.reason, extra=extra)

    # --- broker health ---------------------------------------------------------------

    async def _watch_broker(self) -> None:
        """Probe the cluster's metadata so /readyz notices a dead broker quickly."""
        client = AIOKafkaClient(**client_options(self.settings, "-health"))
        try:
            while True:
                try:
                    async with asyncio.timeout(HEALTH_INTERVAL * 2):
                        if not client.cluster.brokers():
                            await client.bootstrap()
                        await client.fetch_all_metadata()
                    self.reachable = True
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.reachable = False
                    self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(HEALTH_INTERVAL)
        finally:
            await client.close()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, ingest: KafkaIngest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.ingest.assigned = False
        await self.ingest._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.ingest._assigned(set(assigned))
