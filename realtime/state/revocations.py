"""Revoked tokens: by ``jti``, or every token of a user issued before a time.

An entry lives as long as a token it matches could still be valid: a ``jti`` entry until
the token's ``exp`` when the caller knows it, else ``REALTIME_REVOCATION_TTL_SECONDS``; a
user entry until ``issuedBefore`` plus that TTL (set it to at least the longest token
lifetime the auth service issues). Memory keeps entries in process; Redis shares them
between instances and keeps a local copy, so a Redis outage does not forget what this
instance already knew (it answers from that copy and logs a warning).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any

from redis.exceptions import RedisError

from realtime.auth.identity import Identity
from realtime.dependency import DependencyError

log = logging.getLogger(__name__)


def matches(identity: Identity, token_id: str | None, user_id: str | None,
            issued_before: float | None) -> bool:
    """Whether a revocation (by ``token_id``, or by ``user_id`` + ``issued_before``) covers
    ``identity``. A token without ``iat`` cannot be dated, so a user-wide revocation covers it."""
    if token_id is not None:
        return identity.token_id == token_id
    if user_id is None or issued_before is None or identity.user_id != user_id:
        return False
    return identity.issued_at is None or identity.issued_at < issued_before


class Revocations(ABC):
    """Where revocations are kept; :meth:`is_revoked` runs on every identification."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._tokens: dict[str, float] = {}  # jti → keep until
        self._users: dict[str, tuple[float, float]] = {}  # user → (issued before, keep until)

    def remember_token(self, token_id: str, expires_at: float | None = None) -> float:
        """Record locally; returns until when the entry is kept (epoch seconds)."""
        until = expires_at if expires_at is not None else time.time() + self.ttl
        self._tokens[token_id] = max(until, self._tokens.get(token_id, 0.0))
        return self._tokens[token_id]

    def remember_user(self, user_id: str, issued_before: float) -> float:
        old_before, old_until = self._users.get(user_id, (0.0, 0.0))
        before = max(issued_before, old_before)
        until = max(issued_before + self.ttl, old_until)
        self._users[user_id] = (before, until)
        return until

    def known_locally(self, identity: Identity) -> bool:
        now = time.time()
        if identity.token_id is not None:
            until = self._tokens.get(identity.token_id)
            if until is not None:
                if until > now:
                    return True
                del self._tokens[identity.token_id]
        entry = self._users.get(identity.user_id)
        if entry is not None:
            if entry[1] <= now:
                del self._users[identity.user_id]
            elif matches(identity, None, identity.user_id, entry[0]):
                return True
        return False

    @abstractmethod
    async def revoke_token(self, token_id: str, expires_at: float | None = None) -> None:
        """Revoke one token by its ``jti``."""

    @abstractmethod
    async def revoke_user(self, user_id: str, issued_before: float) -> None:
        """Revoke every token of ``user_id`` issued before ``issued_before`` (epoch seconds)."""

    @abstractmethod
    async def is_revoked(self, identity: Identity) -> bool: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (the Redis client belongs to the bus)."""


class MemoryRevocations(Revocations):
    async def revoke_token(self, token_id: str, expires_at: float | None = None) -> None:
        self.remember_token(token_id, expires_at)

    async def revoke_user(self, user_id: str, issued_before: float) -> None:
        self.remember_user(user_id, issued_before)

    async def is_revoked(self, identity: Identity) -> bool:
        return self.known_locally(identity)


class RedisRevocations(Revocations):
    """``{prefix}rv:t:{jti}`` → 1 and ``{prefix}rv:u:{user}`` → issued-before, each expiring
    with the entry; one ``MGET`` per identification."""

    def __init__(self, redis: Any, prefix: str, ttl: float) -> None:
        super().__init__(ttl)
        self._redis = redis
        self._prefix = prefix

    def _token_key(self, token_id: str) -> str:
        return f"{self._prefix}rv:t:{token_id}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}rv:u:{user_id}"

    async def revoke_token(self, token_id: str, expires_at: float | None = None) -> None:
        until = self.remember_token(token_id, expires_at)
        seconds = max(1, int(until - time.time()) + 1)
        try:
            await self._redis.set(self._token_key(token_id), 1, ex=seconds)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis revocation failed: {type(exc).__name__}: {exc}"
                                  ) from exc

    async def revoke_user(self, user_id: str, issued_before: float) -> None:
        until = self.remember_user(user_id, issued_before)
        before = self._users[user_id][0]
        seconds = max(1, int(until - time.time()) + 1)
        key = self._user_key(user_id)
        try:
            # Keep the latest cut-off when two revocations race (GET+SET is not atomic).
            current = await self._redis.get(key)
            if current is not None and float(current) > before:
                before = float(current)
            await self._redis.set(key, repr(before), ex=seconds)
        except (RedisError, OSError) as exc:
            raise DependencyError(f"redis revocation failed: {type(exc).__name__}: {exc}"
                                  ) from exc

    async def is_revoked(self, identity: Identity) -> bool:
        if self.known_locally(identity):
            return True
        keys = [self._user_key(identity.user_id)]
        if identity.token_id is not None:
            keys.append(self._token_key(identity.token_id))
        try:
            found = await self._redis.mget(keys)
        except (RedisError, OSError) as exc:
            log.warning("revocation check unavailable, using this instance's copy: %s: %s",
                        type(exc).__name__, exc)
            return False
        if len(found) > 1 and found[1] is not None:
            return True
        return found[0] is not None and matches(identity, None, identity.user_id,
                                                float(found[0]))
