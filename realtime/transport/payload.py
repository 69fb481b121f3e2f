"""Event payloads that arrive already encoded, and Socket.IO EVENT packets built from them.

The bus encodes each delivered body once, with the same JSON settings python-socketio uses
for its packets (stdlib ``json``, ``separators=(",", ":")``, ASCII escapes). A payload handed
to the manager as an :class:`EncodedPayload` carries those bytes, so the EVENT packet is
``2[<event>,<body>]`` put together around them: byte-identical to what python-socketio would
encode from the decoded dict, without walking or encoding it again.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: python-socketio's packet encoding: ``json.dumps(data, separators=(",", ":"))``.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: Where orjson's output can differ from that, for ASCII output: floats in exponent form
#: or below 0.0001 (``1e-05`` against ``0.00001``), and DEL, which ``json`` escapes.
_MAY_DIFFER = re.compile(rb"[0-9][eE]|\.0000|\x7f")
MAX_CACHED_NAMES = 1024


def encode_json(value: Any) -> bytes:
    """``value`` exactly as python-socketio writes it inside a packet (ASCII bytes).

    orjson encodes first (a few times faster; it also refuses more than 254 levels of
    nesting, which no client could decode anyway); its bytes are kept when they are
    necessarily the same as ``json``'s, otherwise ``json`` encodes the value."""
    data = orjson.dumps(value)
    if data.isascii() and _MAY_DIFFER.search(data) is None:
        return data
    return _ENCODER.encode(value).encode()


class EncodedPayload(dict[str, Any]):
    """A decoded payload that still carries ``json``, the exact bytes it was decoded from.

    Only the bus makes these, from the body it encoded with :func:`encode_json`; treat
    the dict as read-only (the bytes would no longer match it)."""

    __slots__ = ("json", "offset")

    def __init__(self, data: dict[str, Any], encoded: bytes) -> None:
        super().__init__(data)
        self.json = encoded
        #: Sent after the payload as the event's last argument when set: the connection-
        #: state-recovery offset (the delivery's position), the same for every recipient.
        self.offset: str | None = None


_names: dict[tuple[str, str], bytes] = {}


def event_packet(event: str, payload: EncodedPayload, namespace: str) -> bytes:
    """The Socket.IO EVENT packet (without the Engine.IO ``4``) for ``payload`` (and its
    offset): what python-socketio encodes for ``emit(event, payload)`` (or ``emit(event,
    (payload, offset))``).

    Event names and namespaces repeat, so their encoded prefix is kept (bounded)."""
    prefix = _names.get((namespace, event))
    if prefix is None:
        if len(_names) >= MAX_CACHED_NAMES:
            _names.clear()
        space = b"" if namespace == "/" else namespace.encode() + b","
        prefix = _names[(namespace, event)] = b"2" + space + b"[" + encode_json(event) + b","
    if payload.offset is None:
        return prefix + payload.json + b"]"
    return prefix + payload.json + b"," + encode_json(payload.offset) + b"]"
