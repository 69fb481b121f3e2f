"""A broker without idempotent-producer support (Tansu: no InitProducerId) with the default
``REALTIME_KAFKA_ENABLE_IDEMPOTENCE=true``: the producer falls back and says so once."""

from __future__ import annotations

import logging

import pytest

from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, dlq_headers, produce, read_all, readyz, wait_ready
from support.server import run_server, token

HINT = "set REALTIME_KAFKA_ENABLE_IDEMPOTENCE=false"


async def test_default_producer_on_a_broker_without_idempotence_keeps_the_dlq_working(
        kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    names = KafkaNames()
    await names.create(kafka_broker)
    settings = {**names.settings(kafka_broker), "kafka_enable_idempotence": True}
    async with run_server(**settings) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            await produce(kafka_broker, names.publish, [
                {"id": "bad", "type": "NO_SUCH_TYPE"},
                {"id": "good", "type": "PUSH", "event": "ok", "rooms": ["user:u1"]}])
            await client.wait_for("ok", timeout=15)  # the partition did not stall
            answer = await client.call("user_update_request", {
                "userId": "u1", "updates": {"a": 1}, "operationId": "op-1"}, timeout=10)
            assert answer["ok"] is True, answer
        [letter] = await read_all(kafka_broker, names.dlq, 1)
        assert dlq_headers(letter)["x-dlq-reason"] == "unknown_type"
        assert len(await read_all(kafka_broker, names.requests, 1)) == 1
        status, body = await readyz(srv.url)
        assert status == 200, body
        assert "broker does not support idempotent producers" in body["checks"]["kafka"]
        assert HINT in body["checks"]["kafka"]
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and HINT in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert not warnings[0].exc_info
