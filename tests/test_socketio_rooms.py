"""End to end: real server, real Socket.IO clients, events published over HTTP."""

from __future__ import annotations

from support.clients import connected, quiet
from support.server import run_server, token


async def test_each_table_row_reaches_its_room_only() -> None:
    async with run_server() as srv, \
            connected(srv.url, token("u1")) as alice, \
            connected(srv.url, token("u2")) as bob, \
            connected(srv.url, token("boss", ["admin"])) as admin:
        assert (await alice.call("subscribe_order_updates", "o-1"))["ok"] is False
        assert (await admin.call("subscribe_order_updates", "o-1"))["ok"] is True
        events = [
            {"id": "e1", "type": "USER_UPDATED", "userId": "u1",
             "updates": {"name": "A", "password": "x"}, "updatedAt": "t1"},
            {"id": "e2", "type": "EXTERNAL_SYNC_COMPLETED", "userId": "u1",
             "externalSystem": "crm", "status": "ok", "completedAt": "t2"},
            {"id": "e3", "type": "ORDER_STATUS_UPDATED", "orderId": "o-1", "userId": "u1",
             "newStatus": "SHIPPED", "previousStatus": "PAID", "updatedAt": "t3",
             "estimatedDelivery": "t9"},
            {"id": "e4", "type": "PAYMENT_PROCESSED", "userId": "u1", "orderId": "o-1",
             "paymentStatus": "SUCCEEDED", "amount": 12.5, "processedAt": "t4"},
            {"id": "e5", "type": "PUSH", "event": "promo", "rooms": ["user:u2", "role:admin"],
             "data": {"text": "hi"}},
        ]
        status, body = await srv.publish(events)
        assert status == 202, body
        assert body["accepted"] == ["e1", "e2", "e3", "e4", "e5"]

        [updated] = await alice.wait_for("user_updated")
        assert updated["userId"] == "u1" and updated["updates"] == {"name": "A", "password": "x"}
        assert updated["eventId"] == "e1" and updated["position"]
        [sync] = await alice.wait_for("sync_completed")
        assert sync == {"eventId": "e2", "position": sync["position"], "system": "crm",
                        "status": "ok", "completedAt": "t2"}
        [payment] = await alice.wait_for("payment_processed")
        assert payment["status"] == "SUCCEEDED" and payment["amount"] == 12.5

        [admin_copy] = await admin.wait_for("user_updated_admin")
        assert admin_copy["updates"] == {"name": "A"}  # sensitive keys removed
        [order] = await admin.wait_for("order_status_updated")
        assert order["status"] == "SHIPPED" and order["previousStatus"] == "PAID"
        assert order["estimatedDelivery"] == "t9" and order["eventId"] == "e3"
        [promo_admin] = await admin.wait_for("promo")
        [promo_bob] = await bob.wait_for("promo")
        assert promo_admin["text"] == promo_bob["text"] == "hi"
        await quiet()
        assert [e for e, _ in alice.events if e not in
                ("user_updated", "sync_completed", "payment_processed")] == []
        assert [e for e, _ in bob.events] == ["promo"]
        assert "user_updated" not in [e for e, _ in admin.events]


async def test_token_by_header_and_query() -> None:
    async with run_server() as srv:
        async with connected(srv.url, headers={"Authorization": f"Bearer {token('h')}"},
                             auth={}) as by_header:
            await srv.publish({"id": "1", "type": "PUSH", "event": "x", "rooms": ["user:h"]})
            assert (await by_header.wait_for("x"))[0]["eventId"] == "1"
        async with connected(f"{srv.url}?token={token('q')}", auth={}) as by_query:
            await srv.publish({"id": "2", "type": "PUSH", "event": "y", "rooms": ["user:q"]})
            assert (await by_query.wait_for("y"))[0]["eventId"] == "2"


async def _negotiated_compression(url: str) -> int:
    import aiohttp

    ws_url = url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(ws_url, compress=15) as ws:
        return ws.compress


async def test_permessage_deflate_is_never_negotiated() -> None:
    """Per-socket compression would cost CPU per frame and rule out frame-once broadcasts."""
    async with run_server() as srv:
        assert await _negotiated_compression(srv.url) == 0
