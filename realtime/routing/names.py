"""Client event names a ``PUSH`` may use: a safe character set, and none with a meaning of its own.

A name ends up in Socket.IO packets and in SSE ``event:`` lines, so it must never carry a
line break or whitespace, and it must not pose as a protocol event (``connect``), as an
EventSource default (``message``) or as an event the server emits itself (``recovered``).
The full reserved set, which adds the routing table's own client events, is
:data:`realtime.routing.table.RESERVED_EVENTS`.
"""

from __future__ import annotations

import re
from collections.abc import Set

from realtime.routing.errors import RoutingError

EVENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}")
MAX_EVENT_NAME = 64

#: Names with a meaning to the Socket.IO protocol or its client libraries.
SOCKETIO_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
})
#: EventSource hands frames without an ``event:`` line to ``onmessage`` as ``message``.
SSE_EVENTS = frozenset({"message"})
#: Events the gateways emit on their own (session lifecycle, answers, errors).
SERVER_EVENTS = frozenset({
    "error", "token_expired", "recovered", "reconnect", "server_shutdown", "authenticated",
    "auth_error", "order_status", "update_accepted", "disconnected",
})


def check_event_name(name: object, reserved: Set[str]) -> str:
    """``name`` if a ``PUSH`` may use it, else :class:`RoutingError` with the reason."""
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise RoutingError(
            "invalid_event_name",
            f"'event' must be 1-{MAX_EVENT_NAME} characters: a letter, then letters, digits "
            "or _ . : -")
    if name in reserved:
        raise RoutingError("reserved_event", f"event name {name!r} is reserved")
    return name
