"""Idempotency keys of ``POST /api/v1/publish``: the first answer, bound to its request body.

A key is scoped by the calling service (token ``sub``) and stored apart from event ids
(the bus de-duplicates ids on its own): no event id can ever collide with a key. A key is
first claimed as *pending* with the body's fingerprint (for a short time, so a crash does
not lock it for long) and then holds the answer for the de-duplication window.
"""

from __future__ import annotations

import hashlib
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.exceptions import RedisError

from realtime.dependency import DependencyError

#: How long a claimed key waits for its answer before another request may take it over.
PENDING_SECONDS = 30
MAX_MEMORY_KEYS = 100_000


def scoped_key(service: str, key: str) -> str:
    """The stored name of ``key`` sent by ``service`` (two services never share a key)."""
    return hashlib.sha256(orjson.dumps([service, key])).hexdigest()


def fingerprint(body: object) -> str:
    """A digest of a decoded JSON body; the order of object keys does not matter."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Previous:
    """What an earlier request with the same key left: its fingerprint, and its answer
    (``None`` while that request is still being handled)."""

    fingerprint: str
    answer: Answer | None


class IdempotencyStore(ABC):
    @abstractmethod
    async def begin(self, key: str, fingerprint: str) -> Previous | None:
        """Claim ``key`` for a request with ``fingerprint``; ``None`` when it was free."""

    @abstractmethod
    async def finish(self, key: str, fingerprint: str, answer: Answer) -> None:
        """Remember ``answer`` for ``key`` for the window."""

    @abstractmethod
    async def abandon(self, key: str) -> None:
        """Free ``key`` again (the request failed; its retry must run for real)."""


class MemoryIdempotency(IdempotencyStore):
    """In process, bounded in count (the oldest keys are forgotten first)."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_MEMORY_KEYS) -> None:
        self._window = window
        self._clock = clock
        self._max = max_keys
        self._keys: OrderedDict[str, tuple[float, Previous]] = OrderedDict()

    async def begin(self, key: str, fingerprint: str) -> Previous | None:
        now = self._clock()
        keys = self._keys
        held = keys.get(key)
        if held is not None and held[0] > now:
            return held[1]
        keys.pop(key, None)
        while keys:  # forget expired keys at the front, and the oldest beyond the bound
            oldest, (deadline, _) = next(iter(keys.items()))
            if deadline > now and len(keys) < self._max:
                break
            del keys[oldest]
        keys[key] = (now + PENDING_SECONDS, Previous(fingerprint, None))
        return None

    async def finish(self, key: str, fingerprint: str, answer: Answer) -> None:
        self._keys.pop(key, None)
        self._keys[key] = (self._clock() + self._window, Previous(fingerprint, answer))

    async def abandon(self, key: str) -> None:
        self._keys.pop(key, None)


class RedisIdempotency(IdempotencyStore):
    """Shared by all instances: one string per key, ``{prefix}idem:<digest>``."""

    def __init__(self, redis: Any, prefix: str, window: float) -> None:
        self._redis = redis
        self._prefix = f"{prefix}idem:"
        self._window = max(1, int(window))

    async def begin(self, key: str, fingerprint: str) -> Previous | None:
        name = self._prefix + key
        pending = orjson.dumps({"f": fingerprint})
        try:
            for _ in range(3):  # the key may expire between SET NX and GET
                if await self._redis.set(name, pending, nx=True, ex=PENDING_SECONDS):
                    return None
                raw = await self._redis.get(name)
                if raw is not None:
                    return _previous(raw)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis idempotency key failed: {type(exc).__name__}: {exc}"
                                  ) from exc
        raise DependencyError("redis idempotency key kept expiring while claimed")

    async def finish(self, key: str, fingerprint: str, answer: Answer) -> None:
        value = orjson.dumps({"f": fingerprint, "s": answer.status, "b": answer.body.decode()})
        try:
            await self._redis.set(self._prefix + key, value, ex=self._window)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis idempotency answer failed: {type(exc).__name__}: {exc}"
                                  ) from exc

    async def abandon(self, key: str) -> None:
        try:
            await self._redis.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis idempotency release failed: {type(exc).__name__}: "
                                  f"{exc}") from exc


def _previous(raw: bytes) -> Previous:
    stored = orjson.loads(raw)
    answer = Answer(int(stored["s"]), stored["b"].encode()) if "s" in stored else None
    return Previous(str(stored["f"]), answer)
