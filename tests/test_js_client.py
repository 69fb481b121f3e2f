"""The official JavaScript client (socket.io-client 4, run by node) against the server."""

from __future__ import annotations

from support.js import JsClient
from support.server import Running, run_server, token


async def _publish_to(srv: Running, user: str, event_id: str) -> None:
    status, body = await srv.publish({"id": event_id, "type": "PUSH", "event": "greeting",
                                      "rooms": [f"user:{user}"], "data": {"hello": "js"}})
    assert status == 202, body


async def test_official_client_receives_events_and_acks() -> None:
    async with run_server() as srv:
        client = await JsClient(srv.url, {
            "auth": {"token": token("js-user", ["admin"])},
            "emit": [{"event": "subscribe_order_updates", "args": ["o-js"], "ack": True}],
            "exitAfterEvents": 2, "timeoutMs": 10000}).start()
        await client.until("ready")
        await _publish_to(srv, "js-user", "js-1")
        await client.until("disconnect")  # it exits after 2 events
        [ack] = [line for line in client.lines if line["type"] == "ack"]
        assert ack["response"] == {"ok": True, "orderId": "o-js", "status": None}
        events = [line for line in client.lines if line["type"] == "event"]
        assert [e["event"] for e in events] == ["order_status", "greeting"]
        assert events[1]["args"][0]["hello"] == "js"
        assert events[1]["args"][0]["eventId"] == "js-1"
        assert await client.wait() == 0


async def test_official_client_gets_connect_error_with_code() -> None:
    async with run_server() as srv:
        for bad, code in [("garbage", "invalid_token"),
                          (token("late", ttl=-60), "expired")]:
            client = await JsClient(srv.url, {"auth": {"token": bad}}).start()
            error = await client.until("connect_error")
            assert error["data"] == {"code": code}, error
            assert error["message"]
            assert await client.wait() == 0


async def test_official_client_over_long_polling() -> None:
    async with run_server() as srv:
        client = await JsClient(srv.url, {"auth": {"token": token("poller")},
                                          "transports": ["polling"],
                                          "exitAfterEvents": 1}).start()
        await client.until("ready")
        await _publish_to(srv, "poller", "poll-1")
        event = await client.until("event")
        assert event["args"][0]["eventId"] == "poll-1"
