"""The one path every event takes: decode → validate (route) → remember order facts → publish.

HTTP publish and the Kafka consumer share it, so both accept and refuse exactly the same
events: :meth:`Ingestor.decode` bounds the size, :meth:`Ingestor.validate` everything else
(see :meth:`realtime.routing.Router.route`); both raise :class:`RoutingError` with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.metrics.events_received.labels(source).inc()
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
        self.metrics.events_routed.labels(routed.type).inc()
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
        results = []
        for event, messages in zip(routed, published, strict=True):
            if messages is None:
                self.metrics.events_deduplicated.inc()
                results.append(IngestResult(event.event_id, True, []))
            else:
                self.metrics.events_routed.labels(event.type).inc()
                results.append(IngestResult(event.event_id, False, messages))
        return results

    async def ingest(self, event: object, source: str) -> IngestResult:
        """Validate and publish one event; raises RoutingError (bad event) or BusError."""
        return await self.publish(self.validate(event, source))
