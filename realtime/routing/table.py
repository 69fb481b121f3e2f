"""The routing table: which client event, to which rooms, with which payload.

Adding an event type is adding a row to :data:`ROUTES`. Each row names the source
fields it needs (``required``); an event missing one is rejected with a reason that
ingest paths turn into a dead letter (Kafka) or a 400 (HTTP).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime.routing.errors import RoutingError
from realtime.routing.names import SERVER_EVENTS, SOCKETIO_EVENTS, SSE_EVENTS, check_event_name
from realtime.routing.shape import check_depth

Event = Mapping[str, Any]
Projection = Callable[[Event], Any]

#: Keys removed from ``updates`` for the admin copy when the event has no ``sanitizedUpdates``.
SENSITIVE_KEYS = re.compile(r"pass(word)?|secret|token|ssn|card|cvv|iban|pin", re.IGNORECASE)
MAX_PUSH_ROOMS = 100
ROOM_PATTERN = re.compile(r"^[A-Za-z0-9_.:@|\-]{1,200}$")


def src(name: str) -> Projection:
    """Projection that copies source field ``name`` (``None`` when absent)."""
    return lambda event: event.get(name)


def sanitized_updates(event: Event) -> Any:
    """The admin copy of ``updates``: ``sanitizedUpdates`` if given, else sensitive keys dropped."""
    if "sanitizedUpdates" in event:
        return event["sanitizedUpdates"]
    updates = event.get("updates")
    if isinstance(updates, Mapping):
        return {k: v for k, v in updates.items() if not SENSITIVE_KEYS.search(str(k))}
    return updates


@dataclass(slots=True)
class Delivery:
    """One client event to send to the union of ``rooms`` (each socket gets it once).

    ``payload`` never has ``eventId`` or ``position`` keys: the bus puts them first."""

    event: str
    rooms: tuple[str, ...]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Route:
    """One output of an event type: client event name, room templates, payload projection."""

    event: str
    rooms: tuple[str, ...]
    payload: Mapping[str, Projection]

    def deliver(self, event: Event) -> Delivery:
        rooms = tuple(template.format_map(_Fields(event)) for template in self.rooms)
        return Delivery(self.event, rooms, {k: p(event) for k, p in self.payload.items()})


@dataclass(frozen=True, slots=True)
class EventType:
    """A row of the table: required source fields and the deliveries they produce."""

    required: tuple[str, ...]
    routes: tuple[Route, ...] = ()
    #: Whether ``orderId``/``userId`` of this type teach the server who owns an order.
    tracks_orders: bool = False
    #: Source field holding the order's new status, for order-state snapshots.
    order_status_field: str | None = None
    #: Custom builder for rows whose shape comes from the event itself (``PUSH``).
    build: Callable[[Event], list[Delivery]] | None = field(default=None)

    def deliveries(self, event: Event) -> list[Delivery]:
        if self.build is not None:
            return self.build(event)
        return [route.deliver(event) for route in self.routes]


#: Room names already checked (they repeat: one per user, order, role); bounded.
_valid_rooms: set[str] = set()
MAX_VALID_ROOMS = 100_000


#: Event names already checked (they repeat too); bounded the same way.
_valid_names: set[str] = set()


def _remember(checked: set[str], value: str) -> None:
    if len(checked) >= MAX_VALID_ROOMS:
        checked.clear()
    checked.add(value)


def _valid_room(room: str) -> bool:
    if not ROOM_PATTERN.fullmatch(room):
        return False
    _remember(_valid_rooms, room)
    return True


def _event_name(name: object) -> str:
    if type(name) is str and name in _valid_names:
        return name
    checked = check_event_name(name, RESERVED_EVENTS)
    _remember(_valid_names, checked)
    return checked


def _push(event: Event) -> list[Delivery]:
    name = _event_name(event.get("event"))
    rooms, data = event.get("rooms"), event.get("data", {})
    if not isinstance(rooms, list) or not rooms or len(rooms) > MAX_PUSH_ROOMS:
        raise RoutingError("invalid_field", f"'rooms' must be a list of 1..{MAX_PUSH_ROOMS} rooms")
    for room in rooms:
        if not (isinstance(room, str) and (room in _valid_rooms or _valid_room(room))):
            raise RoutingError("invalid_field",
                               "'rooms' entries must be room names like 'user:42'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RoutingError("invalid_field", "'data' must be a JSON object")
    payload = dict(data)
    # The server sets these two; a payload never carries its own (see ``Delivery``).
    if "eventId" in payload or "position" in payload:
        payload.pop("eventId", None)
        payload.pop("position", None)
    return [Delivery(name, tuple(dict.fromkeys(rooms)) if len(rooms) > 1 else (rooms[0],),
                     payload)]


ROUTES: dict[str, EventType] = {
    "USER_UPDATED": EventType(
        required=("userId", "updates"),
        routes=(
            Route("user_updated", ("user:{userId}",),
                  {"userId": src("userId"), "updates": src("updates"),
                   "updatedAt": src("updatedAt")}),
            Route("user_updated_admin", ("role:admin",),
                  {"userId": src("userId"), "updates": sanitized_updates,
                   "updatedAt": src("updatedAt")}),
        ),
    ),
    "EXTERNAL_SYNC_COMPLETED": EventType(
        required=("userId", "externalSystem"),
        routes=(
            Route("sync_completed", ("user:{userId}",),
                  {"system": src("externalSystem"), "status": src("status"),
                   "completedAt": src("completedAt")}),
        ),
    ),
    "ORDER_STATUS_UPDATED": EventType(
        required=("orderId", "newStatus"),
        tracks_orders=True,
        order_status_field="newStatus",
        routes=(
            Route("order_status_updated", ("order:{orderId}",),
                  {"orderId": src("orderId"), "status": src("newStatus"),
                   "previousStatus": src("previousStatus"), "updatedAt": src("updatedAt"),
                   "estimatedDelivery": src("estimatedDelivery")}),
        ),
    ),
    "PAYMENT_PROCESSED": EventType(
        required=("userId", "orderId"),
        tracks_orders=True,
        routes=(
            Route("payment_processed", ("user:{userId}",),
                  {"orderId": src("orderId"), "status": src("paymentStatus"),
                   "amount": src("amount"), "processedAt": src("processedAt")}),
        ),
    ),
    "PUSH": EventType(required=("event", "rooms"), build=_push),
}

#: Every client event name a ``PUSH`` may not use: protocol names, and every event the
#: server emits itself (its gateways' own events and the client events of the rows above).
RESERVED_EVENTS: frozenset[str] = (
    SOCKETIO_EVENTS | SSE_EVENTS | SERVER_EVENTS
    | frozenset(route.event for row in ROUTES.values() for route in row.routes)
)

#: Source fields that become part of a room name must be plain scalars.
ROOM_FIELDS = ("userId", "orderId")
MAX_ID_LENGTH = 200
#: Integer ids beyond this do not survive a round trip through JavaScript clients.
MAX_SAFE_INTEGER = 2**53 - 1


class _Fields(dict[str, str]):
    """``str.format_map`` source that stringifies ids (``42`` and ``"42"`` name one room)."""

    def __init__(self, event: Event) -> None:
        super().__init__({k: str(event[k]) for k in ROOM_FIELDS if k in event})


@dataclass(slots=True)
class Routed:
    """A validated event: its id, its type and what to deliver."""

    event_id: str
    type: str
    deliveries: list[Delivery]
    order_id: str | None = None
    owner_id: str | None = None
    order_status: str | None = None


class Router:
    """Validates an event against its row and projects it into deliveries."""

    def __init__(self, routes: Mapping[str, EventType] = ROUTES) -> None:
        self.routes = routes

    def route(self, event: object) -> Routed:
        if not isinstance(event, Mapping):
            raise RoutingError("not_an_object", "event must be a JSON object")
        check_depth(event)
        get = event.get
        event_id, type_ = get("id"), get("type")
        if type(event_id) is not str:
            event_id = _integer_id(event_id)
        elif event_id == "":
            raise RoutingError("missing_id", "event needs an 'id' (string or integer)")
        if len(event_id) > MAX_ID_LENGTH:
            raise RoutingError("invalid_field", "'id' is too long")
        if not isinstance(type_, str) or not type_:
            raise RoutingError("missing_type", "event needs a 'type'")
        row = self.routes.get(type_)
        if row is None:
            raise RoutingError("unknown_type", f"unknown event type {type_!r}")
        missing = [name for name in row.required if get(name) in _ABSENT]
        if missing:
            raise RoutingError("missing_fields", f"{type_} needs field(s) {', '.join(missing)}")
        for name in ROOM_FIELDS:
            value = get(name)
            if value is not None and not _plain_id(value):
                raise RoutingError("invalid_field", f"'{name}' must be a plain id")
        order_id = get("orderId") if row.tracks_orders else None
        owner = get("userId") if row.tracks_orders else None
        status = get(row.order_status_field) if row.order_status_field else None
        return Routed(
            event_id=event_id,
            type=type_,
            deliveries=row.deliveries(event),
            order_id=str(order_id) if order_id is not None else None,
            owner_id=str(owner) if owner is not None else None,
            order_status=str(status) if status is not None else None,
        )


#: Field values that count as missing.
_ABSENT: tuple[object, ...] = (None, "", [])


def _integer_id(event_id: object) -> str:
    """A non-string ``id`` as its text: integers (``7.0`` counts as 7) within JavaScript's
    safe range."""
    if isinstance(event_id, float) and event_id.is_integer():
        event_id = int(event_id)  # JSON does not distinguish 7 from 7.0
    if not isinstance(event_id, int) or isinstance(event_id, bool):
        raise RoutingError("missing_id", "event needs an 'id' (string or integer)")
    if abs(event_id) > MAX_SAFE_INTEGER:
        raise RoutingError("invalid_field", "integer 'id' must be a safe integer (< 2**53)")
    return str(event_id)


def _plain_id(value: object) -> bool:
    """Whether a room-naming field is a string or safe integer that fits a room name."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        return False
    text = str(value)
    return len(text) <= MAX_ID_LENGTH and ROOM_PATTERN.fullmatch(text) is not None
