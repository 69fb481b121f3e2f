"""Who may join ``order:{id}``: roles, the token's ``orders`` claim, known ownership,
then (optionally) the backend's HTTP authorization callback.

The callback is guarded by a timeout, a circuit breaker and a short cache, so a dead
backend produces a fast ``unavailable`` denial instead of hanging the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp

from realtime.auth.identity import Identity
from realtime.state.orders import OrderStore

log = logging.getLogger(__name__)

Verdict = Literal["allowed", "forbidden", "unavailable"]


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    via: str

    @property
    def allowed(self) -> bool:
        return self.verdict == "allowed"


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; lets one trial call through after
    ``reset_seconds`` (half-open) and closes again when it succeeds."""

    def __init__(self, failures: int, reset_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._reset = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self._reset else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "half-open":
            self._opened_at = self._clock()  # one trial per reset period
            return True
        return state == "closed"

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()


class AuthorizationCallback:
    """``POST url {userId, orderId, roles}`` → ``200 {"allowed": bool}``."""

    def __init__(self, url: str, *, timeout: float, cache_seconds: float,
                 breaker: CircuitBreaker,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.breaker = breaker
        self.calls = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def check(self, identity: Identity, order_id: str) -> Verdict:
        key = (identity.user_id, order_id)
        cached = self._cache.get(key)
        if cached and cached[0] > self._clock():
            return "allowed" if cached[1] else "forbidden"
        if not self.breaker.allow():
            return "unavailable"
        self.calls += 1
        try:
            allowed = await self._ask(identity, order_id)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self.breaker.failure()
            log.warning("authorization callback failed: %s", type(exc).__name__)
            return "unavailable"
        self.breaker.success()
        if self._cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (self._clock() + self._cache_seconds, allowed)
        return "allowed" if allowed else "forbidden"

    async def _ask(self, identity: Identity, order_id: str) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {"userId": identity.user_id, "orderId": order_id, "roles": sorted(identity.roles)}
        async with self._session.post(self.url, json=body) as response:
            if response.status in (401, 403, 404):
                return False
            if response.status != 200:
                raise ValueError(f"callback answered HTTP {response.status}")
            answer = await response.json(content_type=None)
        if not isinstance(answer, dict) or not isinstance(answer.get("allowed"), bool):
            raise ValueError("callback answer lacks a boolean 'allowed'")
        return bool(answer["allowed"])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class OrderAccess:
    """The rules of SPEC "Rooms", in order: role, claim, ownership, callback."""

    def __init__(self, reader_roles: list[str], store: OrderStore,
                 callback: AuthorizationCallback | None = None) -> None:
        self.reader_roles = frozenset(reader_roles)
        self.store = store
        self.callback = callback

    async def check(self, identity: Identity, order_id: str) -> Decision:
        if identity.has_any_role(self.reader_roles):
            return Decision("allowed", "role")
        if order_id in identity.orders:
            return Decision("allowed", "claim")
        info = await self.store.get(order_id)
        if info is not None and info.owner == identity.user_id:
            return Decision("allowed", "owner")
        if self.callback is not None:
            return Decision(await self.callback.check(identity, order_id), "callback")
        return Decision("forbidden", "none")
