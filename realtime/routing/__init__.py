"""Routing: validated events in, deliveries (client event, rooms, payload) out.

:meth:`Router.route` is the one validation step of every ingest path (HTTP, Kafka, CLI):
what it accepts can be encoded and delivered; what it refuses raises :class:`RoutingError`
with a stable ``reason``.
"""

from realtime.routing.errors import RoutingError
from realtime.routing.shape import MAX_DEPTH
from realtime.routing.table import (
    RESERVED_EVENTS,
    ROUTES,
    Delivery,
    EventType,
    Route,
    Routed,
    Router,
)

__all__ = ["MAX_DEPTH", "RESERVED_EVENTS", "ROUTES", "Delivery", "EventType", "Route", "Routed",
           "Router", "RoutingError"]
