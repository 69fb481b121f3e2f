"""The one path every event takes: decode → validate (route) → remember order facts → publish.

HTTP publish and the Kafka consumer share it, so both accept and refuse exactly the same
events: :meth:`Ingestor.decode` bounds the size, :meth:`Ingestor.validate` everything else
(see :meth:`realtime.routing.Router.route`); both raise :class:`RoutingError` with a reason.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.bus import FanoutBus, Message
from realtime.metrics import Metrics
from realtime.routing import Routed, Router, RoutingError
from realtime.state.orders import OrderStore


@dataclass(frozen=True, slots=True)
class IngestResult:
    event_id: str
    duplicate: bool
    messages: list[Message]


class Ingestor:
    """Shared by HTTP publish and the Kafka consumer so both behave identically."""

    def __init__(self, router: Router, bus: FanoutBus, orders: OrderStore, metrics: Metrics,
                 max_event_bytes: int) -> None:
        self.router = router
        self.bus = bus
        self.orders = orders
        self.metrics = metrics
        self.max_event_bytes = max_event_bytes
        # Metric children bound once per label value (sources and event types are few).
        self._received = functools.lru_cache(maxsize=64)(metrics.events_received.labels)
        self._routed = functools.lru_cache(maxsize=256)(metrics.events_routed.labels)

    def decode(self, raw: bytes | None) -> object:
        """Parse one raw event; oversized or non-JSON input raises :class:`RoutingError`."""
        if raw is None:
            raise RoutingError("invalid_json", "empty message")
        if len(raw) > self.max_event_bytes:
            raise RoutingError("too_large",
                               f"event is {len(raw)} bytes; limit {self.max_event_bytes}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RoutingError("invalid_json", f"not JSON: {exc}") from None

    def validate(self, event: object, source: str) -> Routed:
        """The validation step: what it returns can be encoded and delivered."""
        self._received(source).inc()
        return self._route(event, source)

    def validate_many(self, events: list[Any], source: str) -> list[Routed | RoutingError]:
        """:meth:`validate` for each event (counted once for the batch): each result is
        the routed event or the error refusing it."""
        self._received(source).inc(len(events))
        results: list[Routed | RoutingError] = []
        for event in events:
            try:
                results.append(self._route(event, source))
            except RoutingError as exc:
                results.append(exc)
        return results

    def _route(self, event: object, source: str) -> Routed:
        try:
            return self.router.route(event)
        except RoutingError as exc:
            self.metrics.events_rejected.labels(source, exc.reason).inc()
            raise

    async def publish(self, routed: Routed) -> IngestResult:
        """Publish a validated event; raises a DependencyError (BusError) when a backend fails."""
        if routed.order_id is not None and (routed.owner_id or routed.order_status):
            await self.orders.record(routed.order_id, routed.owner_id, routed.order_status)
        try:
            messages = await self.bus.publish(routed.event_id, routed.deliveries)
        except Exception:
            self.metrics.bus_publish_failures.inc()
            raise
        if messages is None:
            self.metrics.events_deduplicated.inc()
            return IngestResult(routed.event_id, True, [])
        self._routed(routed.type).inc()
        return IngestResult(routed.event_id, False, messages)

    async def publish_many(self, routed: list[Routed]) -> list[IngestResult]:
        """Publish validated events in one bus call (one round trip on Redis, all or
        nothing); raises a DependencyError (BusError) when a backend fails."""
        for event in routed:
            if event.order_id is not None and (event.owner_id or event.order_status):
                await self.orders.record(event.order_id, event.owner_id, event.order_status)
        try:
            published = await self.bus.publish_many(
                [(event.event_id, event.deliveries) for event in routed])
        except Exception:
            self.metrics.bus_publish_failures.inc()
            raise
        results = [IngestResult(event.event_id, messages is None, messages or [])
                   for event, messages in zip(routed, published, strict=True)]
        routed_types = Counter(e.type for e, r in zip(routed, results, strict=True)
                               if not r.duplicate)
        for type_, count in routed_types.items():
            self._routed(type_).inc(count)
        duplicates = len(results) - sum(routed_types.values())
        if duplicates:
            self.metrics.events_deduplicated.inc(duplicates)
        return results

    async def ingest(self, event: object, source: str) -> IngestResult:
        """Validate and publish one event; raises RoutingError (bad event) or BusError."""
        return await self.publish(self.validate(event, source))
