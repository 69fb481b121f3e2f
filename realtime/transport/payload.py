"""Event payloads encoded once, and Socket.IO EVENT packets built around their bytes.

The bus encodes each delivered body once, with the same JSON settings python-socketio uses
for its packets (stdlib ``json``, ``separators=(",", ":")``, ASCII escapes), so the EVENT
packet is ``42[<event>,<body>]`` put together around those bytes: byte-identical to what
python-socketio would encode from the decoded dict, without decoding, walking or encoding
it again.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

#: python-socketio's packet encoding: ``json.dumps(data, separators=(",", ":"))``.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: Where orjson's output can differ from that, for ASCII output: floats in exponent form
#: (``1e-05`` against ``1e-5``) or below 0.0001 (``.0000``), and DEL, which ``json``
#: escapes. The exponent test starts at the letter (a literal set) and looks back for a
#: digit: several times faster than one alternation of the three.
_EXPONENT = re.compile(rb"[eE](?<=[0-9][eE])")
MAX_CACHED_NAMES = 1024


def encode_json(value: Any) -> bytes:
    """``value`` exactly as python-socketio writes it inside a packet (ASCII bytes).

    orjson encodes first (a few times faster; it also refuses more than 254 levels of
    nesting, which no client could decode anyway); its bytes are kept when they are
    necessarily the same as ``json``'s, otherwise ``json`` encodes the value."""
    data = orjson.dumps(value)
    if (data.isascii() and b"\x7f" not in data and b".0000" not in data
            and _EXPONENT.search(data) is None):
        return data
    return _ENCODER.encode(value).encode()


def encode_text(text: str) -> bytes:
    """:func:`encode_json` for a string (no float to look for)."""
    data = orjson.dumps(text)
    if data.isascii() and b"\x7f" not in data:
        return data
    return _ENCODER.encode(text).encode()


_names: dict[tuple[str, str], bytes] = {}


def event_packet(event: str, body: bytes, offset: str | None, namespace: str = "/") -> bytes:
    """The Engine.IO message carrying the Socket.IO EVENT packet for ``body`` (a payload
    encoded by :func:`encode_json`) and ``offset``: what python-socketio sends for
    ``emit(event, payload)`` (or ``emit(event, (payload, offset))``), byte for byte.

    Event names and namespaces repeat, so their encoded prefix is kept (bounded)."""
    prefix = _names.get((namespace, event))
    if prefix is None:
        if len(_names) >= MAX_CACHED_NAMES:
            _names.clear()
        space = b"" if namespace == "/" else namespace.encode() + b","
        prefix = _names[(namespace, event)] = b"42" + space + b"[" + encode_json(event) + b","
    if offset is None:
        return prefix + body + b"]"
    return prefix + body + b',"' + offset.encode() + b'"]'
