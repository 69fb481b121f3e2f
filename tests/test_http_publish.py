"""POST /api/v1/publish: service auth, validation, uniform errors, de-duplication, 429."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from support.clients import connected, quiet
from support.server import run_server, token

GOOD = {"id": "h1", "type": "PUSH", "event": "news", "rooms": ["user:reader"], "data": {"a": 1}}


def assert_error(body: Any, code: str) -> None:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code and body["error"]["message"]


async def test_service_token_required() -> None:
    async with run_server() as srv:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{srv.url}/api/v1/publish", json=GOOD) as response:
                assert response.status == 401
                assert_error(await response.json(), "unauthorized")
        status, body = await srv.publish(GOOD, bearer="garbage")
        assert status == 401
        assert_error(body, "invalid_token")
        status, body = await srv.publish(GOOD, bearer=token("user", ["admin"]))
        assert status == 403
        assert_error(body, "forbidden")


@pytest.mark.parametrize("payload, code", [
    (b"{nope", "invalid_json"),
    ({"type": "PUSH"}, "invalid_event"),
    ({"id": "x"}, "invalid_event"),
    ({"id": "x", "type": "MYSTERY"}, "invalid_event"),
    ({"id": "x", "type": "ORDER_STATUS_UPDATED", "orderId": "1"}, "invalid_event"),
    ({"id": "x", "type": "PUSH", "event": "e", "rooms": []}, "invalid_event"),
    ({"id": "x", "type": "PUSH", "event": "e", "rooms": ["r"], "data": [1]}, "invalid_event"),
    ({"id": "x", "type": "PUSH", "event": "connect", "rooms": ["r"]}, "invalid_event"),
    ([], "invalid_request"),
    ("just a string", "invalid_event"),
])
async def test_invalid_events_are_400(payload: Any, code: str) -> None:
    async with run_server() as srv:
        if isinstance(payload, bytes):
            async with aiohttp.ClientSession() as session, session.post(
                    f"{srv.url}/api/v1/publish", data=payload,
                    headers={"Authorization": f"Bearer {token('svc', ['service'])}"}) as resp:
                status, body = resp.status, await resp.json()
        else:
            status, body = await srv.publish(payload)
        assert status == 400
        assert_error(body, code)


async def test_bad_event_in_a_batch_publishes_nothing() -> None:
    async with run_server() as srv, connected(srv.url, token("reader")) as client:
        status, body = await srv.publish([GOOD, {"id": "bad", "type": "NOPE"}])
        assert status == 400 and body["error"]["details"][0]["index"] == 1
        await quiet()
        assert client.events == []


async def test_too_large_is_413() -> None:
    async with run_server(max_request_bytes=1000) as srv:
        big = {**GOOD, "data": {"blob": "x" * 5000}}
        status, body = await srv.publish(big)
        assert status == 413
        assert_error(body, "payload_too_large")


async def test_list_and_deduplication_by_id_and_idempotency_key() -> None:
    async with run_server() as srv, connected(srv.url, token("reader")) as client:
        second = {**GOOD, "id": "h2"}
        status, body = await srv.publish([GOOD, second])
        assert status == 202 and body == {"accepted": ["h1", "h2"], "duplicates": []}
        status, body = await srv.publish(GOOD)
        assert status == 202 and body == {"accepted": [], "duplicates": ["h1"]}
        keyed = {**GOOD, "id": "h3"}
        await srv.publish(keyed, headers={"Idempotency-Key": "req-1"})
        status, body = await srv.publish(keyed, headers={"Idempotency-Key": "req-1"})
        assert status == 202 and body == {"accepted": ["h3"], "duplicates": []}  # first answer
        retry = {**GOOD, "id": "h3-retry"}  # another body under the same key
        status, body = await srv.publish(retry, headers={"Idempotency-Key": "req-1"})
        assert status == 409
        assert_error(body, "idempotency_key_reused")
        await client.wait_for("news", count=3)
        await quiet()
        assert [n["eventId"] for n in client.named("news")] == ["h1", "h2", "h3"]


async def test_publish_rate_limit_is_429_with_retry_after() -> None:
    async with run_server(publish_rate_per_second=1, publish_burst=2) as srv:
        assert (await srv.publish({**GOOD, "id": "r1"}))[0] == 202
        assert (await srv.publish({**GOOD, "id": "r2"}))[0] == 202
        async with aiohttp.ClientSession() as session, session.post(
                f"{srv.url}/api/v1/publish", json={**GOOD, "id": "r3"},
                headers={"Authorization": f"Bearer {token('backend', ['service'])}"}) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "1"
            assert_error(await resp.json(), "rate_limited")


async def test_health_ready_and_metrics() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as session:
        async with session.get(f"{srv.url}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{srv.url}/readyz") as response:
            assert response.status == 200 and (await response.json())["ready"] is True
        await srv.publish(GOOD)
        async with session.get(f"{srv.url}/metrics") as response:
            text = await response.text()
            assert 'realtime_events_routed_total{type="PUSH"} 1.0' in text
            assert "realtime_connections" in text
