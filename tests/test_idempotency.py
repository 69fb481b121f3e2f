"""Idempotency-Key: scoped by the calling service, bound to the body, apart from event ids.

Run on both backends (memory and a real redis-server).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from support.clients import connected, quiet
from support.server import Running, run_server, token

EVENT = {"id": "i1", "type": "PUSH", "event": "news", "rooms": ["user:reader"], "data": {"a": 1}}


@pytest.fixture(params=["memory", "redis"])
async def srv(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    overrides: dict[str, Any] = {}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_server").url
    async with run_server(**overrides) as running:
        yield running


async def keyed(srv: Running, events: Any, key: str, service: str = "backend",
                raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token(service, ['service'])}",
               "Idempotency-Key": key, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(
            f"{srv.url}/api/v1/publish", data=raw if raw is not None else orjson.dumps(events),
            headers=headers) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_same_key_and_body_gets_the_first_answer_and_publishes_once(
        srv: Running) -> None:
    async with connected(srv.url, token("reader")) as client:
        first = await keyed(srv, [EVENT, {**EVENT, "id": "i2"}], "k-1")
        assert first[:2] == (202, {"accepted": ["i1", "i2"], "duplicates": []})
        again = await keyed(srv, [EVENT, {**EVENT, "id": "i2"}], "k-1")
        assert again[:2] == first[:2]
        # the same body with keys in another order is the same body
        reordered = orjson.dumps([{k: EVENT[k] for k in reversed(list(EVENT))},
                                  {**EVENT, "id": "i2"}])
        assert (await keyed(srv, None, "k-1", raw=reordered))[:2] == first[:2]
        await client.wait_for("news", count=2)
        await quiet()
        assert [e["eventId"] for e in client.named("news")] == ["i1", "i2"]


async def test_same_key_other_body_is_409(srv: Running) -> None:
    assert (await keyed(srv, EVENT, "k-2"))[0] == 202
    status, body, _ = await keyed(srv, {**EVENT, "id": "other"}, "k-2")
    assert status == 409
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_by_the_calling_service(srv: Running) -> None:
    assert (await keyed(srv, EVENT, "shared", service="billing"))[:2] == \
        (202, {"accepted": ["i1"], "duplicates": []})
    status, body, _ = await keyed(srv, {**EVENT, "id": "s2"}, "shared", service="shipping")
    assert (status, body) == (202, {"accepted": ["s2"], "duplicates": []})


async def test_event_ids_and_keys_never_collide(srv: Running) -> None:
    async with connected(srv.url, token("reader")) as client:
        # ids that look like any internal key format are plain ids
        for event_id in ("idem:K:0", "idem:backend:K:0", "K", "dedup:K"):
            status, body = await srv.publish({**EVENT, "id": event_id})
            assert (status, body) == (202, {"accepted": [event_id], "duplicates": []})
        status, body, _ = await keyed(srv, {**EVENT, "id": "fresh"}, "K")
        assert (status, body) == (202, {"accepted": ["fresh"], "duplicates": []})
        await client.wait_for("news", count=5)


async def test_event_id_deduplication_applies_with_a_key(srv: Running) -> None:
    async with connected(srv.url, token("reader")) as client:
        assert (await keyed(srv, EVENT, "a"))[:2] == (202, {"accepted": ["i1"], "duplicates": []})
        assert (await keyed(srv, EVENT, "b"))[:2] == (202, {"accepted": [], "duplicates": ["i1"]})
        await client.wait_for("news")
        await quiet()
        assert len(client.named("news")) == 1


async def test_refused_request_does_not_bind_the_key(srv: Running) -> None:
    bad = {**EVENT, "event": "connect"}
    assert (await keyed(srv, bad, "k-3"))[0] == 400
    status, body, _ = await keyed(srv, EVENT, "k-3")
    assert (status, body) == (202, {"accepted": ["i1"], "duplicates": []})


async def test_concurrent_repeats_publish_once(srv: Running) -> None:
    async with connected(srv.url, token("reader")) as client:
        batch = [{**EVENT, "id": f"c{n}"} for n in range(50)]
        answers = await asyncio.gather(*(keyed(srv, batch, "k-4") for _ in range(5)))
        first = {"accepted": [e["id"] for e in batch], "duplicates": []}
        for status, body, headers in answers:
            if status == 409:  # the first request was still being handled
                assert body["error"]["code"] == "idempotency_key_in_use"
                assert headers["Retry-After"] == "1"
            else:
                assert (status, body) == (202, first)
        assert (await keyed(srv, batch, "k-4"))[:2] == (202, first)
        await client.wait_for("news", count=50)
        await quiet()
        assert len(client.named("news")) == 50
