"""Backends picked once, by URL: the fan-out bus and the shared state that goes with it.

``memory://`` keeps everything in process (one instance). ``redis://`` (``rediss://``,
``unix://``, ``redis+sentinel://``) puts the bus, the order store, presence and the
idempotency keys on one shared Redis client, so that several instances act as one service.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.bus import FanoutBus, MemoryBus
from realtime.state.idempotency import IdempotencyStore, MemoryIdempotency, RedisIdempotency
from realtime.state.orders import MemoryOrderStore, OrderStore, RedisOrderStore
from realtime.state.presence import HEARTBEAT_TTL, MemoryPresence, Presence, RedisPresence


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """The settings the backends need (see README "Configuration")."""

    prefix: str = "rt:"
    history_size: int = 1000
    history_ttl: float = 3600.0
    dedup_window: float = 600.0
    order_ttl: float = 7 * 24 * 3600.0
    presence_ttl: int = HEARTBEAT_TTL


@dataclass(frozen=True, slots=True)
class Backends:
    bus: FanoutBus
    orders: OrderStore
    presence: Presence
    idempotency: IdempotencyStore

    async def start(self) -> None:
        await self.bus.start()
        await self.presence.start()

    async def close(self) -> None:
        """Presence first (it deregisters through the shared client), the bus (owner) last."""
        await self.presence.close()
        await self.orders.close()
        await self.bus.close()


def create_backends(url: str, options: BackendOptions) -> Backends:
    if url.startswith("memory://"):
        return Backends(
            bus=MemoryBus(history_size=options.history_size, history_ttl=options.history_ttl,
                          dedup_window=options.dedup_window),
            orders=MemoryOrderStore(),
            presence=MemoryPresence(),
            idempotency=MemoryIdempotency(options.dedup_window),
        )
    from realtime.bus.redis import RedisBus, connect

    client = connect(url)
    return Backends(
        bus=RedisBus(url, prefix=options.prefix, history_size=options.history_size,
                     history_ttl=options.history_ttl, dedup_window=options.dedup_window,
                     client=client),
        orders=RedisOrderStore(client, options.prefix, options.order_ttl),
        presence=RedisPresence(client, options.prefix, options.presence_ttl),
        idempotency=RedisIdempotency(client, options.prefix, options.dedup_window),
    )
