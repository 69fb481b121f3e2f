"""``POST /api/v1/publish``: a backend publishes one event (or a list) with a service token.

A batch is all-or-nothing: every event is validated before any is published. The answer
lists each event id once, either as ``accepted`` (published now) or as ``duplicates``
(published before). An ``Idempotency-Key`` makes a retry of the same request get the first
answer again; event-id de-duplication applies either way.
"""

from __future__ import annotations

import logging
from itertools import compress
from operator import attrgetter, not_

import orjson
from aiohttp import web

from realtime.dependency import DependencyError
from realtime.gateways.limits import TokenBucket
from realtime.http.errors import ApiError, ServiceAuth, unavailable
from realtime.ingest.pipeline import Ingestor
from realtime.routing import Routed, RoutingError
from realtime.routing.shape import text_within
from realtime.state.idempotency import Answer, IdempotencyStore, fingerprint, scoped_key

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 500
_EVENT_ID = attrgetter("event_id")
MAX_KEY_LENGTH = 200


class PublishEndpoint:
    """Validates a whole batch before publishing any of it; rate-limited per service."""

    def __init__(self, ingestor: Ingestor, auth: ServiceAuth, idempotency: IdempotencyStore,
                 rate: float, burst: int) -> None:
        self.ingestor = ingestor
        self.auth = auth
        self.idempotency = idempotency
        self.metrics = ingestor.metrics
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
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > MAX_KEY_LENGTH:
            raise ApiError(400, "invalid_request",
                           f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")
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
        routed, refused = self.ingestor.validate_many(events, "http", text_within(raw))
        if refused:  # one bad event refuses the whole batch
            raise ApiError(400, "invalid_event", refused[0][1].message, [
                {"index": index, "reason": error.reason, "message": error.message}
                for index, error in refused])
        if key is None:
            return await self._publish(routed)
        return await self._publish_once(scoped_key(identity.user_id, key), fingerprint(body),
                                        routed)

    async def _publish(self, routed: list[Routed]) -> web.Response:
        """The batch in one bus call: published whole, or not at all (a 503)."""
        ids = list(map(_EVENT_ID, routed))
        if len(set(ids)) < len(ids):  # the same id twice in one batch is one event
            first: dict[str, Routed] = {}
            for event in routed:
                first.setdefault(event.event_id, event)
            routed = list(first.values())
            ids = list(first)
        try:
            results = await self.ingestor.publish_many(routed)
        except DependencyError as exc:
            raise unavailable(exc, "publish", self.metrics, accepted=[],
                              duplicates=[]) from None
        accepted = list(compress(ids, results))
        duplicates = list(compress(ids, map(not_, results)))
        return web.Response(body=orjson.dumps({"accepted": accepted, "duplicates": duplicates}),
                            status=202, content_type="application/json")

    async def _publish_once(self, key: str, print_: str, routed: list[Routed]) -> web.Response:
        """Publish under an idempotency key: the first answer is kept for the key's body."""
        try:
            previous = await self.idempotency.begin(key, print_)
        except DependencyError as exc:
            raise unavailable(exc, "publish", self.metrics) from None
        if previous is not None:
            if previous.fingerprint != print_:
                raise ApiError(409, "idempotency_key_reused",
                               "this Idempotency-Key was used with a different request body")
            if previous.answer is None:
                raise ApiError(409, "idempotency_key_in_use",
                               "a request with this Idempotency-Key is still being handled",
                               {"retryAfterSeconds": 1})
            return web.Response(status=previous.answer.status, body=previous.answer.body,
                                content_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        try:
            response = await self._publish(routed)
        except BaseException:
            try:
                await self.idempotency.abandon(key)
            except DependencyError as exc:
                log.warning("could not release an idempotency key: %s", exc)
            raise
        assert isinstance(response.body, bytes)
        try:
            await self.idempotency.finish(key, print_, Answer(response.status, response.body))
        except DependencyError as exc:  # published all the same: answer, and say so in the log
            log.warning("could not store an idempotent answer: %s", exc)
        return response
