"""Property: a generated record (deep, wide, unicode, huge, wrong types, not JSON, missing
id/type, unknown type) is either delivered intact to the client in its room or dead-lettered
with a reason; the partition never stalls (a sentinel after each batch arrives); no
traceback or error is logged."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from support.clients import Recorder, connected
from support.kafka import KafkaBroker
from support.kafka_events import ROOM, Case, cases
from support.kafka_helpers import KafkaNames, TopicTail, dlq_headers, wait_ready
from support.logs import problems
from support.server import run_server, token

MAX_EVENT_BYTES = 32 * 1024  # so that "huge" cases straddle the limit
_ids = itertools.count()


@dataclass
class Stack:
    topic: str
    client: Recorder
    producer: AIOKafkaProducer
    dlq: TopicTail
    log: pytest.LogCaptureFixture


@pytest.fixture
async def stack(kafka_broker: KafkaBroker,
                caplog: pytest.LogCaptureFixture) -> AsyncIterator[Stack]:
    """One server, one client in ``user:u1`` and a DLQ reader, shared by all examples."""
    caplog.set_level(logging.INFO)
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker),
                          max_request_bytes=MAX_EVENT_BYTES) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client, \
                TopicTail(kafka_broker, names.dlq) as dlq:
            producer = kafka_broker.producer()
            await producer.start()
            try:
                yield Stack(names.publish, client, producer, dlq, caplog)
            finally:
                await producer.stop()


@dataclass(frozen=True)
class Expected:
    """What the client receives if the record is delivered."""

    event: Any
    event_id: str
    payload: dict[str, Any]


def expected_delivery(raw: bytes) -> Expected | None:
    """The delivery a record can produce for ``user:u1`` (None: it can only be refused)."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    event_id = event.get("id")
    if isinstance(event_id, float) and event_id.is_integer():
        event_id = int(event_id)
    if not isinstance(event_id, str | int) or isinstance(event_id, bool):
        return None
    if event.get("type") == "PUSH":
        data = event.get("data", {})
        data = {} if data is None else data
        if not isinstance(data, dict):
            return None
        payload = {k: v for k, v in data.items() if k not in ("eventId", "position")}
        return Expected(event.get("event"), str(event_id), payload)
    if event.get("type") == "USER_UPDATED":
        payload = {"userId": event.get("userId"), "updates": event.get("updates"),
                   "updatedAt": event.get("updatedAt")}
        return Expected("user_updated", str(event_id), payload)
    return None


def received(client: Recorder, event_id: str) -> list[tuple[str, Any]]:
    return [(name, data) for name, data in client.events
            if isinstance(data, dict) and data.get("eventId") == event_id]


def source_offsets(letters: list[Any], topic: str) -> set[int]:
    return {int(h["x-dlq-source-offset"]) for h in map(dlq_headers, letters)
            if h.get("x-dlq-source-topic") == topic}


def check(stack: Stack, case: Case, raw: bytes, offset: int) -> str:
    """Assert the record's one outcome; return it (for ``--hypothesis-show-statistics``)."""
    expected = expected_delivery(raw)
    got = received(stack.client, expected.event_id) if expected else []
    dead = [letter for letter in stack.dlq.records
            if offset in source_offsets([letter], stack.topic)]
    where = f"{case.kind} @{offset}: {raw[:200]!r}"
    if got:
        assert expected is not None and not dead, where
        assert len(got) == 1, (where, got)
        [(name, data)] = got
        assert name == expected.event, (where, name)
        assert {k: v for k, v in data.items() if k != "position"} == {
            **expected.payload, "eventId": expected.event_id}, where
        return f"{case.kind}: delivered"
    assert not case.must_deliver, f"valid record not delivered: {where}"
    assert len(dead) == 1, f"neither delivered nor dead-lettered once: {where} {dead}"
    headers = dlq_headers(dead[0])
    assert headers["x-dlq-reason"] and headers["x-dlq-error"], (where, headers)
    assert dead[0].value == raw or "x-dlq-value-dropped" in headers, where
    return f"{case.kind}: dead letter {headers['x-dlq-reason']}"


@settings(max_examples=60, deadline=None, database=None,
          phases=[Phase.explicit, Phase.generate],  # no shrinking: keeps the run bounded
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(batch=st.lists(cases, min_size=1, max_size=8))
async def test_every_record_is_delivered_intact_or_dead_lettered(
        stack: Stack, batch: list[Case]) -> None:
    produced = []
    for case in batch:
        n = next(_ids)
        raw = case.render(f"h{n}", 10**9 + n)
        sent = await stack.producer.send_and_wait(stack.topic, raw)
        produced.append((case, raw, sent.offset))
    sentinel = f"sentinel-{next(_ids)}"
    await stack.producer.send_and_wait(stack.topic, orjson.dumps(
        {"id": sentinel, "type": "PUSH", "event": "sentinel", "rooms": [ROOM]}))
    async with asyncio.timeout(15):  # the partition did not stall
        while not received(stack.client, sentinel):
            await asyncio.sleep(0.02)
    # Records before the sentinel were handled first: each was delivered or dead-lettered.
    undelivered = {offset for case, raw, offset in produced
                   if not ((e := expected_delivery(raw)) and received(stack.client, e.event_id))}
    await stack.dlq.wait(lambda letters: undelivered <= source_offsets(letters, stack.topic))
    for case, raw, offset in produced:
        event(check(stack, case, raw, offset))
    assert not problems(stack.log.records)
