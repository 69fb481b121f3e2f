"""Backends picked once, by URL: the fan-out bus and the shared state that goes with it.

``memory://`` keeps everything in process (one instance). ``redis://`` (``rediss://``,
``unix://``, ``redis+sentinel://``) puts the bus, the order store, presence, the
idempotency keys, token revocations, recoverable sessions and the control channel on one
shared Redis client,
so that several instances act as one service.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime.bus import BusError, FanoutBus, MemoryBus
from realtime.control.bus import ControlBus, MemoryControlBus, RedisControlBus
from realtime.control.history import Head
from realtime.state.idempotency import IdempotencyStore, MemoryIdempotency, RedisIdempotency
from realtime.state.orders import MemoryOrderStore, OrderStore, RedisOrderStore
from realtime.state.presence import HEARTBEAT_TTL, MemoryPresence, Presence, RedisPresence
from realtime.state.revocations import MemoryRevocations, RedisRevocations, Revocations
from realtime.state.sessions import MemorySessions, RedisSessions, SessionStore


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """The settings the backends need (see README "Configuration")."""

    prefix: str = "rt:"
    history_size: int = 1000
    history_ttl: float = 3600.0
    dedup_window: float = 600.0
    order_ttl: float = 7 * 24 * 3600.0
    presence_ttl: int = HEARTBEAT_TTL
    revocation_ttl: float = 86400.0
    control_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class Backends:
    bus: FanoutBus
    orders: OrderStore
    presence: Presence
    idempotency: IdempotencyStore
    revocations: Revocations
    control: ControlBus
    #: Recoverable Socket.IO sessions (connection-state recovery).
    sessions: SessionStore
    #: The bus's newest position, for reading a room's history (``realtime.control.history``).
    head: Head

    async def start(self) -> None:
        await self.bus.start()
        await self.presence.start()
        await self.control.start()

    async def close(self) -> None:
        """Presence first (it deregisters through the shared client), the bus (owner) last."""
        await self.control.close()
        await self.presence.close()
        await self.orders.close()
        await self.bus.close()


def create_backends(url: str, options: BackendOptions) -> Backends:
    if url.startswith("memory://"):
        memory = MemoryBus(history_size=options.history_size, history_ttl=options.history_ttl,
                           dedup_window=options.dedup_window)

        async def memory_head() -> tuple[str, int] | None:
            return (memory.epoch, memory._seq) if memory._seq else None

        return Backends(
            bus=memory,
            orders=MemoryOrderStore(),
            presence=MemoryPresence(),
            idempotency=MemoryIdempotency(options.dedup_window),
            revocations=MemoryRevocations(options.revocation_ttl),
            control=MemoryControlBus(),
            sessions=MemorySessions(),
            head=memory_head,
        )
    from redis.exceptions import RedisError

    from realtime.bus.redis import RedisBus, connect

    client = connect(url)

    async def redis_head() -> tuple[str, int] | None:
        try:
            epoch, seq = await client.mget(f"{options.prefix}epoch", f"{options.prefix}seq")
        except (RedisError, OSError) as exc:
            raise BusError(f"redis history failed: {type(exc).__name__}: {exc}") from exc
        return (epoch.decode(), int(seq or 0)) if epoch is not None else None

    return Backends(
        bus=RedisBus(url, prefix=options.prefix, history_size=options.history_size,
                     history_ttl=options.history_ttl, dedup_window=options.dedup_window,
                     client=client),
        orders=RedisOrderStore(client, options.prefix, options.order_ttl),
        presence=RedisPresence(client, options.prefix, options.presence_ttl),
        idempotency=RedisIdempotency(client, options.prefix, options.dedup_window),
        revocations=RedisRevocations(client, options.prefix, options.revocation_ttl),
        control=RedisControlBus(client, options.prefix, reply_timeout=options.control_timeout,
                                max_ahead=options.revocation_ttl),
        sessions=RedisSessions(client, options.prefix),
        head=redis_head,
    )
