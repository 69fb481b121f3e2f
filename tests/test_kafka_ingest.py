"""Kafka ingest against a real Kafka-protocol broker (Tansu) and real Socket.IO clients."""

from __future__ import annotations

from support.clients import connected, quiet
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, wait_ready
from support.server import run_server, token


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
