"""The recoverable-session store, memory and Redis: the same contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.backends import BackendOptions, create_backends
from realtime.gateways.recovery import RENEW_CHUNK, Recovery
from realtime.state.sessions import MemorySessions, RedisSessions, SessionRecord, SessionStore
from support.redis_server import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessions()
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    backends = create_backends(redis.url, BackendOptions(prefix="sessions-test:"))
    assert isinstance(backends.sessions, RedisSessions)
    try:
        yield backends.sessions
    finally:
        await backends.close()


async def test_records_round_trip_expire_and_are_found_by_user(store: SessionStore) -> None:
    one = SessionRecord("sid-1", "ana", ("o-1", "o-2"), ("team:blue",), "e-5")
    two = SessionRecord("sid-2", "ana", ("o-3",), (), None)
    other = SessionRecord("sid-3", "bob", ("o-9",), (), "e-1")
    await store.save([("p1", one), ("p2", two), ("p3", other)], ttl=30)
    await store.save([("short", SessionRecord("sid-4", "ana", ("o-4",)))], ttl=0.2)
    assert await store.get("p1") == one and await store.get("p2") == two
    assert await store.get("nobody") is None
    found = await store.of_user("ana")
    assert sorted(r.sid for r in found) == ["sid-1", "sid-2", "sid-4"]
    await asyncio.sleep(0.4)
    assert await store.get("short") is None
    assert sorted(r.sid for r in await store.of_user("ana")) == ["sid-1", "sid-2"]
    await store.delete(["p1"])
    assert await store.get("p1") is None
    assert [r.sid for r in await store.of_user("ana")] == ["sid-2"]
    assert [r.sid for r in await store.of_user("bob")] == ["sid-3"]


def test_a_record_that_is_not_one_decodes_to_none() -> None:
    for raw in [b"", b"null", b"[]", b'{"sid": 1}', b"\xff", None]:
        assert SessionRecord.decode(raw) is None


async def test_live_records_are_renewed_a_chunk_at_a_time(store: SessionStore) -> None:
    """A renewal of many sessions lets the loop run between chunks, and leaves out a
    session that ended meanwhile (it would otherwise be made recoverable again)."""
    live = {f"p{n}": SessionRecord(f"s{n}", f"u{n}", (), (), None)
            for n in range(3 * RENEW_CHUNK + 7)}
    recovery = Recovery(store, 60.0, lambda: None)  # type: ignore[arg-type, return-value]
    recovery.live = lambda: ((pid, record) for pid, record in list(live.items())
                             if pid in live)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 2:
                del live["p1200"]  # ends during the renewal, before its chunk
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await recovery._renew()
        await recovery.flush()
    finally:
        task.cancel()
    assert ticks >= 3  # the loop ran between chunks
    assert await store.get("p1200") is None
    for pid in ("p0", "p1000", f"p{3 * RENEW_CHUNK + 6}"):
        assert (await store.get(pid)) == live[pid]
