"""Poison records: whatever fails for one record dead-letters it; the partition moves on."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.kafka.failures import is_transient, refusal_for
from realtime.routing import RoutingError
from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import (
    KafkaNames,
    dlq_headers,
    metric,
    produce,
    read_all,
    wait_ready,
)
from support.logs import problems
from support.server import run_server, token


def nested(depth: int) -> bytes:
    """A PUSH whose data is ``depth`` levels deep: orjson reads it, but cannot write it."""
    inner = b'{"a":' * (depth - 1) + b"1" + b"}" * (depth - 1)
    return (b'{"id":"deep","type":"PUSH","event":"deep","rooms":["user:u1"],"data":'
            + inner + b"}")


@pytest.fixture(params=["memory", "redis"])
def bus(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Server settings for each bus backend (the Redis one used to retry such records forever)."""
    if request.param == "memory":
        return {}
    return {"redis_url": request.getfixturevalue("redis_server").url}


async def test_unencodable_event_goes_to_the_dlq_and_the_next_one_is_delivered(
        kafka_broker: KafkaBroker, bus: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    names = KafkaNames()
    await names.create(kafka_broker)
    deep = nested(300)
    async with run_server(**names.settings(kafka_broker), **bus) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            await produce(kafka_broker, names.publish, [
                deep, {"id": "after", "type": "PUSH", "event": "ok", "rooms": ["user:u1"]}])
            [after] = await client.wait_for("ok", timeout=15)
            assert after["eventId"] == "after"
            [letter] = await read_all(kafka_broker, names.dlq, 1)
            assert client.named("deep") == []
        headers = dlq_headers(letter)
        assert headers["x-dlq-reason"] and headers["x-dlq-error"]
        assert headers["x-dlq-source-topic"] == names.publish
        assert headers["x-dlq-source-offset"] == "0"
        assert letter.value == deep
        reason = headers["x-dlq-reason"]
        assert await metric(srv.url, "realtime_events_rejected_total",
                            reason=reason, source="kafka") == 1
        assert await metric(srv.url, "realtime_kafka_retries_total") == 0
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == 1 and f"@0: {reason}" in lines[0], lines
    assert not problems(caplog.records)


async def test_a_dead_letter_too_big_for_the_dlq_loses_its_value_not_the_partition(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    # Fits on the source topic, but not once the x-dlq-* headers are added.
    huge = b"<" + b"x" * 1_048_300
    async with run_server(**names.settings(kafka_broker), max_request_bytes=2_000_000) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            await produce(kafka_broker, names.publish, [
                huge, {"id": "after", "type": "PUSH", "event": "ok", "rooms": ["user:u1"]}])
            await client.wait_for("ok", timeout=15)
    [letter] = await read_all(kafka_broker, names.dlq, 1)
    headers = dlq_headers(letter)
    assert headers["x-dlq-reason"] == "invalid_json"
    assert headers["x-dlq-value-dropped"] == str(len(huge))
    assert letter.value == b""


class Unavailable(RuntimeError):
    """A backend's own outage error, as a store may raise it ``from`` the Redis error."""


def test_outages_are_retried_and_everything_else_is_the_records_fault() -> None:
    try:
        try:
            raise RedisConnectionError("connection refused")
        except RedisConnectionError as exc:
            raise Unavailable("order store down") from exc
    except Unavailable as wrapped:
        assert is_transient(wrapped)
    for outage in (RedisConnectionError("x"), ConnectionResetError(), TimeoutError()):
        assert is_transient(outage)
    try:
        orjson.dumps(orjson.loads(b"[" * 300 + b"]" * 300))
    except orjson.JSONEncodeError as unencodable:
        assert not is_transient(unencodable)
        assert refusal_for(unencodable).reason == "internal_error"
        assert "Recursion limit" in refusal_for(unencodable).message
    assert not is_transient(KeyError("x")) and not is_transient(RecursionError())
    assert refusal_for(RoutingError("missing_id", "no id")).reason == "missing_id"


async def test_bad_records_inside_one_batch_are_dead_lettered_and_the_rest_kept_in_order(
        kafka_broker: KafkaBroker, bus: dict[str, Any]) -> None:
    """One fetch, one bus call: the good records around an unencodable and a non-JSON
    record are delivered once each, in order; only the two bad ones are dead-lettered."""
    names = KafkaNames()
    await names.create(kafka_broker)

    def good(n: int) -> dict[str, Any]:
        return {"id": f"g{n}", "type": "PUSH", "event": "ok", "rooms": ["user:u1"],
                "data": {"n": n}}

    async with run_server(**names.settings(kafka_broker), **bus) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            await produce(kafka_broker, names.publish,
                          [good(0), good(1), nested(300), good(2), b"{not json", good(3)])
            received = await client.wait_for("ok", count=4, timeout=15)
            letters = await read_all(kafka_broker, names.dlq, 2)
        assert [event["n"] for event in received] == [0, 1, 2, 3]
        assert sorted(dlq_headers(letter)["x-dlq-source-offset"] for letter in letters) == \
            ["2", "4"]
        assert await metric(srv.url, "realtime_kafka_retries_total") == 0
        assert await metric(srv.url, "realtime_kafka_messages_consumed_total",
                            topic=names.publish) == 6
