"""Presence: connection and distinct-user counts per room, across instances.

Gateways report joins and leaves synchronously (cheap: a counter update, or an entry in
a write-behind queue for Redis), so a mass disconnect never waits on the network.

Redis layout: one hash per room, field ``<instance>|<session>`` → user id, and a
heartbeat key per instance (``REALTIME_PRESENCE_TTL_SECONDS``, refreshed every third of
it) whose value is the instance's own counts (connections, rooms) for ``GET /api/v1/info``.
Counting ignores (and removes) fields of instances whose heartbeat expired, so a
killed instance's clients stop being counted within that many seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from realtime.clock import iso
from realtime.dependency import DependencyError
from realtime.tasks import cancel_task

log = logging.getLogger(__name__)

HEARTBEAT_TTL = 15
FLUSH_EVERY = 0.1


#: This instance's own counts, e.g. ``{"connections": 3, "rooms": 5}`` (set by the app).
Stats = Callable[[], dict[str, Any]]


class Presence(ABC):
    def __init__(self) -> None:
        self.instance = uuid.uuid4().hex[:12]
        self.stats: Stats = dict

    def snapshot(self) -> dict[str, Any]:
        """This instance as ``/api/v1/info`` lists it."""
        return {"instance": self.instance, **self.stats(), "heartbeatAt": iso(time.time())}

    async def instances(self) -> list[dict[str, Any]]:
        """Every live instance with its counts (one, in memory)."""
        return [self.snapshot()]

    @abstractmethod
    def joined(self, session_id: str, user_id: str, room: str) -> None: ...

    @abstractmethod
    def left(self, session_id: str, user_id: str, room: str) -> None: ...

    @abstractmethod
    async def counts(self, room: str) -> tuple[int, int]:
        """(connections, distinct users) in ``room`` across all instances."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin background work."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work."""


class MemoryPresence(Presence):
    def __init__(self) -> None:
        super().__init__()
        self._rooms: dict[str, Counter[str]] = {}

    def joined(self, session_id: str, user_id: str, room: str) -> None:
        self._rooms.setdefault(room, Counter())[user_id] += 1

    def left(self, session_id: str, user_id: str, room: str) -> None:
        users = self._rooms.get(room)
        if users is None:
            return
        users[user_id] -= 1
        if users[user_id] <= 0:
            del users[user_id]
        if not users:
            del self._rooms[room]

    async def counts(self, room: str) -> tuple[int, int]:
        users = self._rooms.get(room, Counter())
        return sum(users.values()), len(users)


class RedisPresence(Presence):
    def __init__(self, redis: Any, prefix: str, ttl: int = HEARTBEAT_TTL) -> None:
        super().__init__()
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl
        self._ops: deque[tuple[bool, str, str, str]] = deque()
        self._task: asyncio.Task[None] | None = None

    def joined(self, session_id: str, user_id: str, room: str) -> None:
        self._ops.append((True, room, f"{self.instance}|{session_id}", user_id))

    def left(self, session_id: str, user_id: str, room: str) -> None:
        self._ops.append((False, room, f"{self.instance}|{session_id}", user_id))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence")

    async def close(self) -> None:
        await cancel_task(self._task)
        with contextlib.suppress(Exception):
            await self._redis.delete(f"{self._prefix}i:{self.instance}")

    async def _run(self) -> None:
        beat = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() - beat >= self._ttl / 3:
                    await self._redis.set(f"{self._prefix}i:{self.instance}",
                                          orjson.dumps(self.snapshot()), ex=self._ttl)
                    beat = loop.time()
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: keep the queue, try again
                log.debug("presence flush failed: %s", exc)
            await asyncio.sleep(FLUSH_EVERY)

    async def _flush(self) -> None:
        if not self._ops:
            return
        batch = [self._ops.popleft() for _ in range(min(len(self._ops), 5000))]
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for join, room, field, user in batch:
                    key = f"{self._prefix}p:{room}"
                    if join:
                        pipe.hset(key, field, user)
                    else:
                        pipe.hdel(key, field)
                await pipe.execute()
        except Exception:
            self._ops.extendleft(reversed(batch))
            raise

    async def instances(self) -> list[dict[str, Any]]:
        """Every instance whose heartbeat is alive, as of its last beat (this one: now)."""
        try:
            keys = [key async for key in self._redis.scan_iter(
                match=f"{self._prefix}i:*", count=1000)]
            values = await self._redis.mget(keys) if keys else []
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis presence failed: {type(exc).__name__}: {exc}"
                                  ) from exc
        found = {}
        for value in values:
            with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError):
                entry = orjson.loads(value)
                found[entry["instance"]] = entry
        found[self.instance] = self.snapshot()
        return sorted(found.values(), key=lambda entry: str(entry["instance"]))

    async def counts(self, room: str) -> tuple[int, int]:
        try:
            return await self._counts(room)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis presence failed: {type(exc).__name__}: {exc}"
                                  ) from exc

    async def _counts(self, room: str) -> tuple[int, int]:
        await self._flush()
        key = f"{self._prefix}p:{room}"
        entries = await self._redis.hgetall(key)
        by_instance: dict[str, list[tuple[bytes, bytes]]] = {}
        for field, user in entries.items():
            by_instance.setdefault(field.split(b"|", 1)[0].decode(), []).append((field, user))
        instances = list(by_instance)
        alive = await self._redis.mget([f"{self._prefix}i:{i}" for i in instances]) \
            if instances else []
        live: list[bytes] = []
        for instance, flag in zip(instances, alive, strict=True):
            if flag is None and instance != self.instance:
                await self._redis.hdel(key, *[f for f, _ in by_instance[instance]])
            else:
                live += [user for _, user in by_instance[instance]]
        return len(live), len(set(live))
