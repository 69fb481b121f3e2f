"""Kafka ingest against a real Kafka-protocol broker (Tansu) and real Socket.IO clients."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from realtime.ingest.kafka import KafkaIngest
from support.clients import connected, quiet
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, read_all, wait_ready
from support.server import SECRET, run_server, token


async def test_each_row_from_its_topic_reaches_exactly_its_room(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker)) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as owner, \
                connected(srv.url, token("u2")) as other, \
                connected(srv.url, token("boss", ["admin"])) as admin:
            assert (await admin.call("subscribe_order_updates", "o-7"))["ok"]
            await produce(kafka_broker, names.user, [
                {"id": "k1", "type": "USER_UPDATED", "userId": "u1",
                 "updates": {"email": "a@b", "token": "secret"}, "updatedAt": "t"}])
            await produce(kafka_broker, names.external, [
                {"id": "k2", "type": "EXTERNAL_SYNC_COMPLETED", "userId": "u1",
                 "externalSystem": "erp", "status": "done", "completedAt": "t"}])
            await produce(kafka_broker, names.order, [
                {"id": "k3", "type": "ORDER_STATUS_UPDATED", "orderId": "o-7", "userId": "u1",
                 "newStatus": "PACKED", "previousStatus": "NEW", "updatedAt": "t",
                 "estimatedDelivery": None},
                {"id": "k4", "type": "PAYMENT_PROCESSED", "orderId": "o-7", "userId": "u1",
                 "paymentStatus": "OK", "amount": 3, "processedAt": "t"}])
            await produce(kafka_broker, names.publish, [
                {"id": "k5", "type": "PUSH", "event": "notice", "rooms": ["user:u2"],
                 "data": {"n": 1}}])

            [updated] = await owner.wait_for("user_updated", timeout=15)
            assert updated == {"eventId": "k1", "position": updated["position"], "userId": "u1",
                               "updates": {"email": "a@b", "token": "secret"}, "updatedAt": "t"}
            [admin_copy] = await admin.wait_for("user_updated_admin", timeout=15)
            assert admin_copy["updates"] == {"email": "a@b"}
            [sync] = await owner.wait_for("sync_completed", timeout=15)
            assert sync["system"] == "erp" and sync["eventId"] == "k2"
            [order] = await admin.wait_for("order_status_updated", timeout=15)
            assert order == {"eventId": "k3", "position": order["position"], "orderId": "o-7",
                             "status": "PACKED", "previousStatus": "NEW", "updatedAt": "t",
                             "estimatedDelivery": None}
            [payment] = await owner.wait_for("payment_processed", timeout=15)
            assert payment == {"eventId": "k4", "position": payment["position"],
                               "orderId": "o-7", "status": "OK", "amount": 3,
                               "processedAt": "t"}
            [notice] = await other.wait_for("notice", timeout=15)
            assert notice["n"] == 1
            # ownership learned from the order event: the owner may now watch the order
            assert (await owner.call("subscribe_order_updates", "o-7"))["status"] == "PACKED"
            await quiet()
            assert sorted(e for e, _ in owner.events) == sorted(
                ["user_updated", "sync_completed", "payment_processed", "order_status"])
            assert [e for e, _ in other.events] == ["notice"]


async def test_bad_messages_are_dead_lettered_and_consumption_goes_on(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    big = {"id": "big", "type": "PUSH", "event": "x", "rooms": ["user:u1"],
           "data": {"blob": "x" * 3000}}
    bad: list[tuple[object, str]] = [
        (b"{not json", "invalid_json"),
        ({"type": "PUSH", "event": "x", "rooms": ["user:u1"]}, "missing_id"),
        ({"id": "m2", "event": "x", "rooms": ["user:u1"]}, "missing_type"),
        ({"id": "m3", "type": "NO_SUCH_TYPE"}, "unknown_type"),
        ({"id": "m4", "type": "ORDER_STATUS_UPDATED", "orderId": "o1"}, "missing_fields"),
        ({"id": "m5", "type": "PUSH", "event": "x", "rooms": []}, "missing_fields"),
        (big, "too_large"),
    ]
    async with run_server(**names.settings(kafka_broker), max_request_bytes=2048) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            for index, (value, _) in enumerate(bad):
                await produce(kafka_broker, names.publish, [value])
                good = {"id": f"good-{index}", "type": "PUSH", "event": "ok",
                        "rooms": ["user:u1"], "data": {"after": index}}
                await produce(kafka_broker, names.publish, [good])
                received = await client.wait_for("ok", count=index + 1, timeout=15)
                assert received[-1]["after"] == index
            letters = await read_all(kafka_broker, names.dlq, len(bad))
        assert len(letters) == len(bad)
        for letter, (value, reason) in zip(letters, bad, strict=True):
            headers = {k: v.decode() for k, v in letter.headers}
            assert headers["x-dlq-reason"] == reason, headers
            assert headers["x-dlq-source-topic"] == names.publish
            assert int(headers["x-dlq-source-offset"]) >= 0
            assert headers["x-dlq-source-partition"] == "0"
            original = value if isinstance(value, bytes) else orjson.dumps(value)
            assert letter.value == original  # the original bytes are kept
        metrics = srv.server.metrics.render().decode()
        assert 'realtime_events_rejected_total{reason="unknown_type",source="kafka"} 1.0' in metrics


async def test_dlq_cli_lists_and_replays(kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    env = {**os.environ, **names.env(kafka_broker), "REALTIME_JWT_SECRET": SECRET}
    async with run_server(**names.settings(kafka_broker)) as srv:
        await wait_ready(srv.url)
        # A PUSH missing its rooms is dead-lettered...
        await produce(kafka_broker, names.publish,
                      [{"id": "fixme", "type": "PUSH", "event": "late", "rooms": ["user:u9"]},
                       {"id": "broken", "type": "PUSH", "event": "late"}])
        await read_all(kafka_broker, names.dlq, 1)
        listing = await _cli(env, "dlq", "list")
        [entry] = [orjson.loads(line) for line in listing.splitlines()]
        assert entry["reason"] == "missing_fields" and entry["source"]["topic"] == names.publish
        assert orjson.loads(entry["value"])["id"] == "broken"
        # ...and replaying it after a fix (here: the client now exists) reaches the source topic.
        async with connected(srv.url, token("u9")) as client:
            out = await _cli(env, "dlq", "replay", entry["ref"])
            assert f"{entry['ref']} -> {names.publish}" in out
            # It is dead-lettered again (still invalid), proving it went through the consumer.
            letters = await read_all(kafka_broker, names.dlq, 2)
            assert {k: v for k, v in letters[1].headers}["x-realtime-replayed-from"] == b"0:0"
            await quiet()
            assert client.events == []
        missing = await _cli(env, "dlq", "replay", "0:999", check=False)
        assert "no dead letter at 0:999" in missing


async def _cli(env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    if check:
        assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_same_id_twice_and_consumer_restart_before_commit(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker)) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as client:
            event = {"id": "dup-1", "type": "PUSH", "event": "once", "rooms": ["user:u1"]}
            await produce(kafka_broker, names.publish, [event, event])
            await client.wait_for("once", timeout=15)
            # Crash the consumer before it commits: stop it without committing, then start a
            # fresh consumer in the same group; Kafka redelivers, de-duplication drops it.
            kafka = srv.server.kafka
            assert kafka is not None
            await produce(kafka_broker, names.publish,
                          [{"id": "dup-2", "type": "PUSH", "event": "once", "rooms": ["user:u1"]}])
            await client.wait_for("once", count=2, timeout=15)
            await kafka.crash_for_test()
            restarted = KafkaIngest(kafka.settings, kafka.ingestor, kafka.producer, kafka.metrics)
            srv.server.kafka = restarted
            srv.server.readiness.add("kafka", restarted.status)
            await restarted.start()
            await wait_ready(srv.url)
            await produce(kafka_broker, names.publish,
                          [{"id": "dup-3", "type": "PUSH", "event": "once", "rooms": ["user:u1"]}])
            await client.wait_for("once", count=3, timeout=20)
            await quiet(1.0)
            assert [d["eventId"] for d in client.named("once")] == ["dup-1", "dup-2", "dup-3"]
            dedup = srv.server.metrics.events_deduplicated._value.get()
            assert dedup >= 1
            await restarted.stop()


async def test_user_update_request_is_produced(kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker)) as srv:
        async with connected(srv.url, token("u1")) as client:
            request = {"userId": "u1", "updates": {"name": "Ann"}, "operationId": "op-1"}
            answer = await client.call("user_update_request", request)
            assert answer == {"ok": True, "operationId": "op-1", "status": "processing"}
            assert (await client.wait_for("update_accepted"))[0]["operationId"] == "op-1"
            denied = await client.call("user_update_request",
                                       {"userId": "u2", "updates": {"x": 1}, "operationId": "op-2"})
            assert denied["ok"] is False and denied["error"] == "forbidden"
            assert denied["operationId"] == "op-2"
        [record] = await read_all(kafka_broker, names.requests, 1)
        await quiet(0.5)
        assert len(await read_all(kafka_broker, names.requests, 1)) == 1
        assert record.key == b"u1"
        value = orjson.loads(record.value)
        assert value["type"] == "USER_UPDATE_REQUEST" and value["requestedBy"] == "u1"
        assert value["updates"] == {"name": "Ann"} and value["operationId"] == "op-1"
        assert value["socketId"] and value["timestamp"].endswith("Z")  # ISO-8601, UTC
