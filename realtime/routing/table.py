"""The routing table: which client event, to which rooms, with which payload.

Adding an event type is adding a row to :data:`ROUTES`. Each row names the source
fields it needs (``required``); an event missing one is rejected with a reason that
ingest paths turn into a dead letter (Kafka) or a 400 (HTTP).

Every event of every ingest path passes :meth:`Router.route`, so a row is compiled once,
when it is made: room templates into prefix/field pairs, payloads into the fields they
copy. Routing an event then costs a handful of dictionary lookups (see README
"Performance").
"""

from __future__ import annotations

import re
import string
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
#: The source fields a room template may name: :meth:`Router.route` checks that they are
#: plain ids (:func:`_plain_id`) before any room is made of them.
ROOM_FIELDS = ("userId", "orderId")


@dataclass(frozen=True, slots=True)
class Source:
    """Projection that copies source field ``name`` (``None`` when absent)."""

    name: str

    def __call__(self, event: Event) -> Any:
        return event.get(self.name)


def src(name: str) -> Projection:
    """Projection that copies source field ``name`` (``None`` when absent)."""
    return Source(name)


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


#: A compiled room template: ``(prefix, field, suffix)``, or the room itself when constant.
Template = tuple[str, str, str] | str


def _template(text: str) -> Template:
    """``"user:{userId}"`` → ``("user:", "userId", "")``; ``"role:admin"`` stays as it is.
    A room names at most one field."""
    pieces = [(literal, name) for literal, name, _, _ in string.Formatter().parse(text)]
    fields = [name for _, name in pieces if name]
    if not fields:
        return text
    if len(fields) > 1:
        raise ValueError(f"room template {text!r}: one {{field}} at most")
    prefix, name = pieces[0]
    return prefix, str(name), "".join(literal for literal, _ in pieces[1:])


@dataclass(frozen=True, slots=True)
class Route:
    """One output of an event type: client event name, room templates, payload projection."""

    event: str
    rooms: tuple[str, ...]
    payload: Mapping[str, Projection]
    _templates: tuple[Template, ...] = field(init=False, repr=False)
    #: ``payload`` as (keys, source fields) when every value is a plain copy, else ``None``.
    _copies: tuple[tuple[str, ...], tuple[str, ...]] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_templates", tuple(_template(t) for t in self.rooms))
        sources = [p for p in self.payload.values() if isinstance(p, Source)]
        object.__setattr__(self, "_copies", (
            tuple(self.payload), tuple(p.name for p in sources)
        ) if len(sources) == len(self.payload) else None)

    def deliver(self, event: Event) -> Delivery:
        """Room fields are plain ids (checked by :meth:`Router.route`): ``42`` and ``"42"``
        name one room."""
        rooms = tuple(t if type(t) is str else t[0] + str(event[t[1]]) + t[2]
                      for t in self._templates)
        get = event.get
        if self._copies is not None:
            keys, names = self._copies
            payload = dict(zip(keys, map(get, names), strict=True))
        else:
            payload = {key: project(event) for key, project in self.payload.items()}
        return Delivery(self.event, rooms, payload)


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

    def __post_init__(self) -> None:
        """A room template names a checked field the row requires (so it is present)."""
        for route in self.routes:
            for template in route._templates:
                if type(template) is not str and (template[1] not in ROOM_FIELDS
                                                  or template[1] not in self.required):
                    raise ValueError(f"room field {template[1]!r} of {route.event!r} must be "
                                     f"one of {ROOM_FIELDS} and required by its row")

    def deliveries(self, event: Event) -> list[Delivery]:
        if self.build is not None:
            return self.build(event)
        return [route.deliver(event) for route in self.routes]


class _Checked(set[str]):
    """Values that passed a check, remembered (they repeat: a room per user, order, role;
    a few event names); bounded: emptied when full."""

    def __init__(self, limit: int = 100_000) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, value: str) -> None:
        if len(self) >= self.limit:
            self.clear()
        self.add(value)


_valid_rooms = _Checked()
_valid_names = _Checked()
_valid_ids = _Checked()


def _push(event: Event) -> list[Delivery]:
    name, rooms, data = event.get("event"), event.get("rooms"), event.get("data", {})
    if type(name) is not str or name not in _valid_names:
        name = check_event_name(name, RESERVED_EVENTS)
        _valid_names.remember(name)
    if not isinstance(rooms, list) or not rooms or len(rooms) > MAX_PUSH_ROOMS:
        raise RoutingError("invalid_field", f"'rooms' must be a list of 1..{MAX_PUSH_ROOMS} rooms")
    for room in rooms:
        if not (isinstance(room, str) and (room in _valid_rooms or _valid_room(room))):
            raise RoutingError("invalid_field",
                               "'rooms' entries must be room names like 'user:42'")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise RoutingError("invalid_field", "'data' must be a JSON object")
    # The server sets these two; a payload never carries its own (see ``Delivery``).
    if "eventId" in data or "position" in data:
        data = {k: v for k, v in data.items() if k != "eventId" and k != "position"}
    return [Delivery(name, (rooms[0],) if len(rooms) == 1 else tuple(dict.fromkeys(rooms)),
                     data)]


def _valid_room(room: str) -> bool:
    if not ROOM_PATTERN.fullmatch(room):
        return False
    _valid_rooms.remember(room)
    return True


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

MAX_ID_LENGTH = 200
#: Integer ids beyond this do not survive a round trip through JavaScript clients.
MAX_SAFE_INTEGER = 2**53 - 1


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

    def route(self, event: object, shallow: bool = False) -> Routed:
        """``shallow``: the caller vouches that the event nests at most
        :data:`~realtime.routing.shape.MAX_DEPTH` levels (its text passed
        :func:`~realtime.routing.shape.text_within`), so the walk is skipped."""
        if type(event) is not dict and not isinstance(event, Mapping):
            raise RoutingError("not_an_object", "event must be a JSON object")
        if not shallow:
            check_depth(event)
        get = event.get
        event_id, type_ = get("id"), get("type")
        if type(event_id) is not str:
            event_id = _integer_id(event_id)
        elif not event_id:
            raise RoutingError("missing_id", "event needs an 'id' (string or integer)")
        elif len(event_id) > MAX_ID_LENGTH:
            raise RoutingError("invalid_field", "'id' is too long")
        if not isinstance(type_, str) or not type_:
            raise RoutingError("missing_type", "event needs a 'type'")
        row = self.routes.get(type_)
        if row is None:
            raise RoutingError("unknown_type", f"unknown event type {type_!r}")
        for name in row.required:
            value = get(name)
            if not value and value in _ABSENT:  # the truth test first: most fields are set
                missing = [name for name in row.required if get(name) in _ABSENT]
                raise RoutingError("missing_fields",
                                   f"{type_} needs field(s) {', '.join(missing)}")
        user_id, order_id = get("userId"), get("orderId")
        if user_id is not None and not _plain_id(user_id):
            raise RoutingError("invalid_field", "'userId' must be a plain id")
        if order_id is not None and not _plain_id(order_id):
            raise RoutingError("invalid_field", "'orderId' must be a plain id")
        deliveries = row.deliveries(event)
        if not row.tracks_orders:
            return Routed(event_id, type_, deliveries)
        status = get(row.order_status_field) if row.order_status_field else None
        return Routed(event_id, type_, deliveries,
                      str(order_id) if order_id is not None else None,
                      str(user_id) if user_id is not None else None,
                      str(status) if status is not None else None)


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
    """Whether a room-naming field is a string or safe integer that fits a room name
    (strings that pass are remembered)."""
    if type(value) is str and value in _valid_ids:
        return True
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        return False
    text = str(value)
    if len(text) > MAX_ID_LENGTH or ROOM_PATTERN.fullmatch(text) is None:
        return False
    if isinstance(value, str):
        _valid_ids.remember(value)
    return True
