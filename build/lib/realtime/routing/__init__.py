"""Routing: validated events in, deliveries (client event, rooms, payload) out."""

from realtime.routing.table import ROUTES, Delivery, EventType, Route, Routed, Router, RoutingError

__all__ = ["ROUTES", "Delivery", "EventType", "Route", "Routed", "Router", "RoutingError"]
