"""Backends are picked once, by URL, together: bus, order store, presence, idempotency keys."""

from __future__ import annotations

from realtime.backends import BackendOptions, create_backends
from realtime.bus import MemoryBus
from realtime.bus.redis import RedisBus
from realtime.routing import Delivery
from realtime.state.idempotency import MemoryIdempotency, RedisIdempotency
from realtime.state.orders import MemoryOrderStore, RedisOrderStore
from realtime.state.presence import MemoryPresence, RedisPresence
from support.redis_server import RedisServer


async def test_memory_url_keeps_everything_in_process() -> None:
    backends = create_backends("memory://", BackendOptions())
    assert isinstance(backends.bus, MemoryBus)
    assert isinstance(backends.orders, MemoryOrderStore)
    assert isinstance(backends.presence, MemoryPresence)
    assert isinstance(backends.idempotency, MemoryIdempotency)


async def test_redis_url_shares_one_client_and_one_prefix(redis_server: RedisServer) -> None:
    backends = create_backends(redis_server.url, BackendOptions(prefix="t1:", presence_ttl=3))
    assert isinstance(backends.bus, RedisBus)
    assert isinstance(backends.orders, RedisOrderStore)
    assert isinstance(backends.presence, RedisPresence)
    assert isinstance(backends.idempotency, RedisIdempotency)
    await backends.start()
    try:
        client = backends.bus.redis
        await backends.orders.record("o-1", "u-1", "PAID")
        backends.presence.joined("s-1", "u-1", "user:u-1")
        assert await backends.presence.counts("user:u-1") == (1, 1)
        assert await backends.bus.publish("e-1", [Delivery("e", ("user:u-1",), {})]) is not None
        assert await backends.idempotency.begin("k", "f") is None
        keys = {key.decode() for key in await client.keys("*")}
        assert {"t1:o:o-1", "t1:p:user:u-1", "t1:h:user:u-1", "t1:idem:k"} <= keys, keys
        assert any(key.startswith("t1:dedup:") for key in keys), keys
        assert all(key.startswith("t1:") for key in keys), keys
        # one connection pool serves them all
        pools = {id(client.connection_pool)}
        for component in (backends.orders, backends.presence, backends.idempotency):
            pools.add(id(component._redis.connection_pool))  # type: ignore[attr-defined]
        assert len(pools) == 1
    finally:
        await backends.close()
