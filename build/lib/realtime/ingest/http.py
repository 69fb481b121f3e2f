"""``POST /api/v1/publish``: a backend publishes one event (or a list) with a service token."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from realtime.bus import BusError
from realtime.gateways.limits import TokenBucket
from realtime.http.errors import ApiError, ServiceAuth
from realtime.ingest.pipeline import Ingestor
from realtime.routing import RoutingError

MAX_EVENTS_PER_REQUEST = 500


class PublishEndpoint:
    """Validates a whole batch before publishing any of it; rate-limited per service."""

    def __init__(self, ingestor: Ingestor, auth: ServiceAuth, rate: float, burst: int) -> None:
        self.ingestor = ingestor
        self.auth = auth
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def _admit(self, service: str, cost: int) -> None:
        bucket = self._buckets.get(service)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._buckets.clear()
            bucket = self._buckets[service] = TokenBucket(self._rate, self._burst)
        if not bucket.take(cost):
            retry = max(1, int(cost / self._rate + 0.999))
            raise ApiError(429, "rate_limited", "publish rate limit exceeded; retry later",
                           {"retryAfterSeconds": retry})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/publish", self.publish)

    async def publish(self, request: web.Request) -> web.Response:
        identity = await self.auth.require(request)
        raw = await request.read()
        try:
            body = self.ingestor.decode(raw)
        except RoutingError as exc:
            status = 413 if exc.reason == "too_large" else 400
            raise ApiError(status, exc.reason, exc.message) from None
        events = body if isinstance(body, list) else [body]
        if not events or len(events) > MAX_EVENTS_PER_REQUEST:
            raise ApiError(400, "invalid_request",
                           f"send 1..{MAX_EVENTS_PER_REQUEST} events")
        self._admit(identity.user_id, len(events))
        # Validate everything first so a bad batch publishes nothing.
        problems: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            try:
                self.ingestor.router.route(event)
            except RoutingError as exc:
                problems.append({"index": index, "reason": exc.reason, "message": exc.message})
        if problems:
            for problem in problems:
                self.ingestor.metrics.events_rejected.labels("http", problem["reason"]).inc()
            raise ApiError(400, "invalid_event", problems[0]["message"], problems)
        idempotency_key = request.headers.get("Idempotency-Key") or None
        if idempotency_key is not None and len(idempotency_key) > 200:
            raise ApiError(400, "invalid_request", "Idempotency-Key is longer than 200 characters")
        accepted: list[str] = []
        duplicates: list[str] = []
        for index, event in enumerate(events):
            key = f"idem:{idempotency_key}:{index}" if idempotency_key else None
            try:
                result = await self.ingestor.ingest(event, "http", dedup_key=key)
            except (BusError, OSError, ConnectionError) as exc:
                raise ApiError(503, "unavailable", f"fan-out bus unavailable: {exc}",
                               {"accepted": accepted}) from None
            accepted.append(result.event_id)
            if result.duplicate:
                duplicates.append(result.event_id)
        return web.json_response({"accepted": accepted, "duplicates": duplicates}, status=202)
