"""Recoverable Socket.IO sessions, kept where every instance (and the next one) can read them.

Connection-state recovery gives a reconnecting client its session back: the same sid,
its order rooms and the rooms a backend granted it. The record of a session is written
while the session lives (when it starts, when its rooms change, and again periodically),
never only when it ends, so it outlives an instance killed with ``kill -9``. A record
expires ``ttl`` seconds after its last write: live sessions are rewritten before that,
and a lost one is written once more to expire after the recovery window.

Keys are private session ids (``pid``): a random secret the client got in its CONNECT
answer. A record also names its user, and a recovery needs a valid token of that user.
Memory keeps records in process (one instance, lost on restart); Redis shares them.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import RedisError

from realtime.dependency import DependencyError


class SessionStoreError(DependencyError):
    """The store could not be read or written."""


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a recovery restores: the sid, whose session it is, and its non-automatic rooms."""

    sid: str
    user_id: str
    orders: tuple[str, ...] = ()
    #: Rooms a backend made the session join (control API), kept as they were.
    granted: tuple[str, ...] = ()
    #: The bus position when the session started: where a replay begins for a client
    #: that has received no event yet.
    since: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps({"sid": self.sid, "user": self.user_id, "orders": self.orders,
                             "granted": self.granted, "since": self.since})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> SessionRecord | None:
        """The record in ``raw``, or ``None`` when missing or not a record."""
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return cls(str(data["sid"]), str(data["user"]),
                       tuple(str(o) for o in data["orders"]),
                       tuple(str(r) for r in data["granted"]),
                       None if data["since"] is None else str(data["since"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


class SessionStore(ABC):
    """Records by ``pid``, each with a time to live, plus which are a user's."""

    @abstractmethod
    async def save(self, records: Sequence[tuple[str, SessionRecord]], ttl: float) -> None:
        """Write (or rewrite) ``records``, each to expire ``ttl`` seconds from now."""

    @abstractmethod
    async def delete(self, pids: Sequence[str]) -> None:
        """Forget ``pids`` (sessions that ended on purpose: not recoverable)."""

    @abstractmethod
    async def get(self, pid: str) -> SessionRecord | None:
        """The live or recent record of ``pid``."""

    @abstractmethod
    async def of_user(self, user_id: str) -> list[SessionRecord]:
        """Every unexpired record of ``user_id`` (live sessions on any instance included)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (the Redis client belongs to the bus)."""


class MemorySessions(SessionStore):
    #: Expired records are dropped by a walk over all of them at most this often (reads
    #: check deadlines themselves): a connect ramp saves records every loop tick.
    PRUNE_SECONDS = 1.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[float, SessionRecord]] = {}
        self._users: dict[str, set[str]] = {}
        self._pruned = clock()

    async def save(self, records: Sequence[tuple[str, SessionRecord]], ttl: float) -> None:
        deadline = self._clock() + ttl
        for pid, record in records:
            self._records[pid] = (deadline, record)
            self._users.setdefault(record.user_id, set()).add(pid)
        self._prune()

    async def delete(self, pids: Sequence[str]) -> None:
        for pid in pids:
            entry = self._records.pop(pid, None)
            if entry is not None:
                self._users.get(entry[1].user_id, set()).discard(pid)

    async def get(self, pid: str) -> SessionRecord | None:
        entry = self._records.get(pid)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    async def of_user(self, user_id: str) -> list[SessionRecord]:
        now = self._clock()
        found = (self._records.get(pid) for pid in self._users.get(user_id, ()))
        return [entry[1] for entry in found if entry is not None and entry[0] > now]

    def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned < self.PRUNE_SECONDS:
            return
        self._pruned = now
        expired = [pid for pid, (deadline, _) in self._records.items() if deadline <= now]
        for pid in expired:
            record = self._records.pop(pid)[1]
            pids = self._users.get(record.user_id)
            if pids is not None:
                pids.discard(pid)
                if not pids:
                    del self._users[record.user_id]


class RedisSessions(SessionStore):
    """``{prefix}s:{pid}`` → the record (with its TTL); ``{prefix}su:{user}`` → a sorted set
    of the user's pids scored by expiry, so a user's records are found without a scan."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, pid: str) -> str:
        return f"{self.prefix}s:{pid}"

    def _user_key(self, user_id: str) -> str:
        return f"{self.prefix}su:{user_id}"

    async def save(self, records: Sequence[tuple[str, SessionRecord]], ttl: float) -> None:
        if not records:
            return
        now = time.time()
        millis = max(1, int(ttl * 1000))
        pipe = self.redis.pipeline(transaction=False)
        for pid, record in records:
            pipe.set(self._key(pid), record.encode(), px=millis)
            user = self._user_key(record.user_id)
            pipe.zadd(user, {pid: now + ttl})
            pipe.zremrangebyscore(user, "-inf", now)
            # The index lives as long as its longest record (Redis 7: NX, then GT).
            pipe.pexpire(user, millis, nx=True)
            pipe.pexpire(user, millis, gt=True)
        await self._run(pipe)

    async def delete(self, pids: Sequence[str]) -> None:
        if pids:
            await self._run(self.redis.delete(*(self._key(pid) for pid in pids)))

    async def get(self, pid: str) -> SessionRecord | None:
        return SessionRecord.decode(await self._run(self.redis.get(self._key(pid))))

    async def of_user(self, user_id: str) -> list[SessionRecord]:
        pids = await self._run(self.redis.zrangebyscore(self._user_key(user_id), time.time(),
                                                        "+inf"))
        if not pids:
            return []
        raws = await self._run(self.redis.mget([self._key(pid.decode()) for pid in pids]))
        return [record for record in map(SessionRecord.decode, raws) if record is not None]

    @staticmethod
    async def _run(command: Any) -> Any:
        try:
            if hasattr(command, "execute"):
                return await command.execute()
            return await command
        except (RedisError, OSError) as exc:
            raise SessionStoreError(f"session store failed: {type(exc).__name__}: {exc}") \
                from exc


def orders_of(records: Iterable[SessionRecord]) -> list[str]:
    """The order ids of ``records``, each once, in first-seen order."""
    return list(dict.fromkeys(order for record in records for order in record.orders))
