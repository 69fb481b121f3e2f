"""Bad client input: floods, oversized and malformed payloads get clear errors, no tracebacks."""

from __future__ import annotations

import asyncio

import pytest

from support.clients import connected
from support.logs import assert_no_tracebacks
from support.server import run_server, token

MALFORMED = [
    ("authenticate", 42), ("authenticate", {"token": 5}), ("authenticate", {"tok": "x"}),
    ("refresh_token", None), ("refresh_token", ["a"]), ("refresh_token", {"token": ""}),
    ("subscribe_order_updates", None), ("subscribe_order_updates", {"orderId": {"a": 1}}),
    ("subscribe_order_updates", [1, 2]), ("subscribe_order_updates", 1.5),
    ("unsubscribe_order_updates", {}), ("unsubscribe_order_updates", "bad id!"),
    ("user_update_request", "string"), ("user_update_request", {"userId": "u"}),
    ("user_update_request", {"userId": "u", "updates": {"a": 1}, "operationId": "o",
                             "extra": True}),
    ("user_update_request", {"userId": 5, "updates": {"a": 1}, "operationId": "o"}),
    ("user_update_request", {"userId": "u", "updates": [], "operationId": "o"}),
    ("user_update_request", {"userId": "u", "updates": {}, "operationId": "o"}),
    ("resume", None), ("resume", {"position": 7}), ("resume", {"position": "x", "y": 1}),
    ("no_such_event", {"a": 1}),
]


async def test_malformed_payloads_get_clear_errors(server_log: pytest.LogCaptureFixture) -> None:
    async with run_server(rate_limit_burst=1000) as srv, \
            connected(srv.url, token("u", ["admin"])) as client:
        for event, payload in MALFORMED:
            answer = await client.call(event, payload)
            assert answer["ok"] is False, (event, payload, answer)
            assert answer["error"] in ("invalid", "unknown_event", "invalid_token"), answer
            assert answer["message"], answer
        # several arguments
        answer = await client.client.call("subscribe_order_updates", ("a", "b"), timeout=5)
        assert answer["error"] == "invalid"
        # without an ack the answer is an `error` event naming the event
        for event, payload in MALFORMED:
            await client.emit(event, payload)
        # user_update_request always answers with an `error` event too (SPEC), ack or not
        also = sum(1 for event, _ in MALFORMED if event == "user_update_request")
        errors = await client.wait_for("error", count=len(MALFORMED) + also)
        assert {e["event"] for e in errors} >= {event for event, _ in MALFORMED}
        assert all(e["code"] and e["message"] for e in errors)
        assert client.client.connected
    assert_no_tracebacks(server_log)


async def test_oversized_payload_refused_connection_kept(
        server_log: pytest.LogCaptureFixture) -> None:
    async with run_server(max_payload_bytes=1000) as srv, \
            connected(srv.url, token("u")) as client:
        answer = await client.call("user_update_request",
                                   {"userId": "u", "updates": {"blob": "x" * 5000},
                                    "operationId": "big"})
        assert answer["error"] == "payload_too_large" and "limit 1000" in answer["message"]
        assert (await client.call("unsubscribe_order_updates", "o1"))["ok"]
    assert_no_tracebacks(server_log)


async def test_flooding_client_is_limited_then_disconnected(
        server_log: pytest.LogCaptureFixture) -> None:
    async with run_server(rate_limit_per_second=5, rate_limit_burst=5,
                          rate_limit_disconnect_after=10) as srv, \
            connected(srv.url, token("flood")) as client:
        for _ in range(40):
            await client.emit("unsubscribe_order_updates", "o1")
        await client.wait_disconnected(timeout=5)
        codes = [e["code"] for e in client.named("error")]
        assert "rate_limited" in codes
        assert client.named("error")[-1]["message"] == "too many events; disconnected"
        metrics = srv.server.metrics.render().decode()
        assert 'realtime_client_refusals_total{reason="rate_limited"}' in metrics
    assert_no_tracebacks(server_log)


async def test_rate_limit_recovers_when_client_slows_down() -> None:
    async with run_server(rate_limit_per_second=20, rate_limit_burst=2,
                          rate_limit_disconnect_after=100) as srv, \
            connected(srv.url, token("burst")) as client:
        answers = [await client.call("unsubscribe_order_updates", "o") for _ in range(6)]
        assert any(a.get("error") == "rate_limited" for a in answers)
        await asyncio.sleep(0.3)
        assert (await client.call("unsubscribe_order_updates", "o"))["ok"]
