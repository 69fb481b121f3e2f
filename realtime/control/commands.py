"""The backend control commands and their one validation.

HTTP bodies, Kafka control events and the cross-instance control channel all become the
same three commands through :func:`parse_command` (an object with a ``type``), so each
path accepts and refuses exactly the same input. A refusal is a :class:`CommandError`
(a :class:`RoutingError`, so the Kafka consumer dead-letters it like any bad event).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from realtime.routing import RoutingError
from realtime.routing.table import ROOM_PATTERN

DISCONNECT = "DISCONNECT_USER"
REVOKE = "REVOKE_TOKENS"
ROOMS = "USER_ROOMS"
TYPES = (DISCONNECT, REVOKE, ROOMS)

MAX_ID = 256
MAX_ROOMS = 100
#: A reason is a code a client can switch on, not prose.
REASON = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}")
DEFAULT_REASON = "disconnected"


class CommandError(RoutingError):
    """A control command that cannot be run; ``reason`` is a stable code."""

    def __init__(self, message: str, reason: str = "invalid_command") -> None:
        super().__init__(reason, message)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End every connection of ``user_id``."""

    user_id: str
    reason: str = DEFAULT_REASON
    reconnect: bool = False


@dataclass(frozen=True, slots=True)
class Revoke:
    """Revoke one token (``token_id``) or a user's tokens issued before a time."""

    token_id: str | None = None
    user_id: str | None = None
    issued_before: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class MoveRooms:
    """Make the live connections of ``user_id`` join and leave rooms."""

    user_id: str
    join: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()


Command = Disconnect | Revoke | MoveRooms


def _text(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise CommandError(f"'{name}' must be a non-empty string of at most {MAX_ID} characters")
    return value


def _time(body: Mapping[str, Any], name: str) -> float | None:
    """Epoch seconds: a non-negative JSON number (absent: ``None``; ``null`` is refused)."""
    if name not in body:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0:
        raise CommandError(f"'{name}' must be epoch seconds (a non-negative number)")
    return float(value)


def _rooms(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ROOMS or not all(
            isinstance(room, str) and ROOM_PATTERN.fullmatch(room) for room in value):
        raise CommandError(f"'{name}' must be a list of at most {MAX_ROOMS} room names "
                           "like 'order:42' (letters, digits and _ . : @ | -)")
    return tuple(dict.fromkeys(value))


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed - {"type", "id"})
    if unknown:
        raise CommandError(f"unknown field(s): {', '.join(unknown)}")


def parse_disconnect(body: Mapping[str, Any]) -> Disconnect:
    _only(body, {"userId", "reason", "reconnect"})
    user_id = _text(body, "userId")
    assert user_id is not None
    reason = body.get("reason", DEFAULT_REASON)
    if not isinstance(reason, str) or not REASON.fullmatch(reason):
        raise CommandError("'reason' must be a code of 1-64 characters: a letter, then "
                           "letters, digits or _ . : -")
    reconnect = body.get("reconnect", False)
    if not isinstance(reconnect, bool):
        raise CommandError("'reconnect' must be true or false")
    return Disconnect(user_id, reason, reconnect)


def parse_revoke(body: Mapping[str, Any], max_ahead: float) -> Revoke:
    """``{jti[, expiresAt]}`` or ``{userId, issuedBefore}``. A cut-off in the future also
    refuses tokens issued until then; it is capped at ``max_ahead`` seconds from now (the
    entry is kept that much longer), as is ``expiresAt``."""
    _only(body, {"jti", "expiresAt", "userId", "issuedBefore"})
    if "jti" in body:
        if "userId" in body or "issuedBefore" in body:
            raise CommandError("give either 'jti' or 'userId' with 'issuedBefore', not both")
        expires_at = _time(body, "expiresAt")
        if expires_at is not None:
            expires_at = min(expires_at, time.time() + max_ahead)
        return Revoke(token_id=_text(body, "jti"), expires_at=expires_at)
    if "expiresAt" in body:
        raise CommandError("'expiresAt' goes with 'jti'")
    user_id = _text(body, "userId")
    issued_before = _time(body, "issuedBefore")
    if issued_before is None:
        raise CommandError("give 'jti', or 'userId' with 'issuedBefore'")
    return Revoke(user_id=user_id, issued_before=min(issued_before, time.time() + max_ahead))


def parse_rooms(body: Mapping[str, Any]) -> MoveRooms:
    _only(body, {"userId", "join", "leave"})
    user_id = _text(body, "userId")
    assert user_id is not None
    # Joins are applied before leaves: a room in both lists ends up left.
    return MoveRooms(user_id, _rooms(body, "join"), _rooms(body, "leave"))


def parse_command(event: object, max_ahead: float) -> Command:
    """A control event (Kafka, or the control channel): an object with a known ``type``."""
    if not isinstance(event, dict):
        raise CommandError("a control event must be a JSON object")
    kind = event.get("type")
    if kind == DISCONNECT:
        return parse_disconnect(event)
    if kind == REVOKE:
        return parse_revoke(event, max_ahead)
    if kind == ROOMS:
        return parse_rooms(event)
    raise CommandError(f"'type' must be one of {', '.join(TYPES)}", "unknown_type")


def to_event(command: Command) -> dict[str, Any]:
    """The control-event form of ``command`` (what :func:`parse_command` reads back)."""
    if isinstance(command, Disconnect):
        return {"type": DISCONNECT, "userId": command.user_id, "reason": command.reason,
                "reconnect": command.reconnect}
    if isinstance(command, MoveRooms):
        return {"type": ROOMS, "userId": command.user_id, "join": list(command.join),
                "leave": list(command.leave)}
    if command.token_id is not None:
        event: dict[str, Any] = {"type": REVOKE, "jti": command.token_id}
        if command.expires_at is not None:
            event["expiresAt"] = command.expires_at
        return event
    return {"type": REVOKE, "userId": command.user_id, "issuedBefore": command.issued_before}
