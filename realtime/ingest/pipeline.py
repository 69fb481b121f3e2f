"""The one path every event takes: decode → validate (route) → remember order facts → publish.

HTTP publish and the Kafka consumer share it, so both accept and refuse exactly the same
events: :meth:`Ingestor.decode` bounds the size, :meth:`Ingestor.validate` everything else
(see :meth:`realtime.routing.Router.route`); both raise :class:`RoutingError` with a reason.
"""

from __future__ import annotations

import functools
from collections import Counter
from itertools import compress, repeat
from operator import attrgetter, is_not
from typing import Any

import orjson

from realtime.bus import FanoutBus
from realtime.metrics import Metrics
from realtime.routing import Routed, Router, RoutingError
from realtime.state.orders import OrderStore


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

    def validate_many(self, events: list[Any], source: str, shallow: bool = False
                      ) -> tuple[list[Routed], list[tuple[int, RoutingError]]]:
        """The validation step for each event (counted once for the batch): the routed
        events, in order, and the refused ones as (index in ``events``, error).
        ``shallow``: the raw text of all of them passed
        :func:`~realtime.routing.shape.text_within` (no depth walk needed)."""
        self._received(source).inc(len(events))
        route = self.router.route
        routed: list[Routed] = []
        refused: list[tuple[int, RoutingError]] = []
        for event in events:
            try:
                routed.append(route(event, shallow))
            except RoutingError as exc:
                self.metrics.events_rejected.labels(source, exc.reason).inc()
                refused.append((len(routed) + len(refused), exc))
        return routed, refused

    async def publish(self, routed: Routed) -> bool:
        """Publish a validated event: ``True``, or ``False`` for a duplicate; raises a
        DependencyError (BusError) when a backend fails."""
        [published] = await self.publish_many([routed])
        return published

    async def publish_many(self, routed: list[Routed]) -> list[bool]:
        """Publish validated events in one bus call (one round trip on Redis, all or
        nothing): for each, ``True`` if published now, ``False`` for a duplicate; raises a
        DependencyError (BusError) when a backend fails."""
        if any(map(_ORDER_ID, routed)):  # in C: most batches have no order events
            for event in routed:
                if event.order_id is not None and (event.owner_id or event.order_status):
                    await self.orders.record(event.order_id, event.owner_id,
                                             event.order_status)
        try:
            published = await self.bus.publish_many(
                list(zip(map(_EVENT_ID, routed), map(_DELIVERIES, routed), strict=True)))
        except Exception:
            self.metrics.bus_publish_failures.inc()
            raise
        fresh = list(map(is_not, published, repeat(None)))
        types = list(compress(map(_TYPE, routed), fresh))
        if types and types.count(types[0]) == len(types):  # a batch is mostly of one type
            self._routed(types[0]).inc(len(types))
        else:
            for type_, count in Counter(types).items():
                self._routed(type_).inc(count)
        duplicates = len(fresh) - len(types)
        if duplicates:
            self.metrics.events_deduplicated.inc(duplicates)
        return fresh


#: Read in C over a whole batch (a comprehension would run Python code per event).
_EVENT_ID, _DELIVERIES, _TYPE = attrgetter("event_id"), attrgetter("deliveries"), attrgetter("type")
_ORDER_ID = attrgetter("order_id")
