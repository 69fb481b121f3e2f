"""What the server has learned about orders: who owns each one and its latest status.

Order events write it (so a user may watch an order as soon as an event about it was
seen); ``subscribe_order_updates`` reads it for authorization and the status snapshot.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from realtime.dependency import DependencyError

MAX_MEMORY_ORDERS = 200_000


@dataclass(frozen=True, slots=True)
class OrderInfo:
    owner: str | None
    status: str | None
    updated_at: float


class OrderStore(ABC):
    @abstractmethod
    async def record(self, order_id: str, owner: str | None, status: str | None) -> None:
        """Remember the owner and/or latest status of an order (``None`` keeps the old value)."""

    @abstractmethod
    async def get(self, order_id: str) -> OrderInfo | None:
        """What is known about ``order_id``."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class MemoryOrderStore(OrderStore):
    """Bounded LRU in process; the least recently updated orders are forgotten first."""

    def __init__(self, max_orders: int = MAX_MEMORY_ORDERS) -> None:
        self._orders: OrderedDict[str, OrderInfo] = OrderedDict()
        self._max = max_orders

    async def record(self, order_id: str, owner: str | None, status: str | None) -> None:
        old = self._orders.pop(order_id, None)
        self._orders[order_id] = OrderInfo(
            owner=owner if owner is not None else (old.owner if old else None),
            status=status if status is not None else (old.status if old else None),
            updated_at=time.time(),
        )
        while len(self._orders) > self._max:
            self._orders.popitem(last=False)

    async def get(self, order_id: str) -> OrderInfo | None:
        return self._orders.get(order_id)


class RedisOrderStore(OrderStore):
    """Shared by all instances: one hash per order, expiring after the configured TTL."""

    def __init__(self, redis: Any, prefix: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._prefix = f"{prefix}o:"
        self._ttl = max(1, int(ttl_seconds))

    async def record(self, order_id: str, owner: str | None, status: str | None) -> None:
        fields = {"updated": str(time.time())}
        if owner is not None:
            fields["owner"] = owner
        if status is not None:
            fields["status"] = status
        key = self._prefix + order_id
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis order store failed: {type(exc).__name__}: {exc}"
                                  ) from exc

    async def get(self, order_id: str) -> OrderInfo | None:
        try:
            raw = await self._redis.hgetall(self._prefix + order_id)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis order store failed: {type(exc).__name__}: {exc}"
                                  ) from exc
        if not raw:
            return None
        owner, status = raw.get(b"owner"), raw.get(b"status")
        return OrderInfo(owner=owner.decode() if owner else None,
                         status=status.decode() if status else None,
                         updated_at=float(raw.get(b"updated", b"0")))
