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
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import orjson

from realtime.transport.websocket import HEADER_16, text_header

#: python-socketio's packet encoding: ``json.dumps(data, separators=(",", ":"))``.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
#: Where orjson's output can differ from that, for ASCII output (found by comparing both over
#: every power of ten and 200,000 random doubles; ``tests/test_encoded_frames.py`` keeps
#: checking): a float written in decimals that ``json`` writes with an exponent (``0.00001``
#: against ``1e-05``: caught by ``.0000``), a one-digit negative exponent (``1e-9`` against
#: ``1e-09``), and DEL, which ``json`` escapes. The exponent test starts at its literal
#: ``e-`` and looks back for the digit: a string such as a UUID matches it only by chance
#: (it then costs a second, exact encoding, never a different result).
_EXPONENT = re.compile(rb"e-[0-9](?![0-9])(?<=[0-9]e-[0-9])")
#: Where any of those is, in one pattern (to find which values of a batch to encode again).
_SUSPECT = re.compile(rb"[\x7f-\xff]|\.0000|" + _EXPONENT.pattern)
MAX_CACHED_NAMES = 1024


def encode_json(value: Any) -> bytes:
    """``value`` exactly as python-socketio writes it inside a packet (ASCII bytes).

    orjson encodes first (a few times faster; it also refuses more than 254 levels of
    nesting, which no client could decode anyway); its bytes are kept when they are
    necessarily the same as ``json``'s, otherwise ``json`` encodes the value."""
    data = orjson.dumps(value)
    return data if _same_as_json(data) else _ENCODER.encode(value).encode()


def _same_as_json(data: bytes) -> bool:
    """Whether orjson's ``data`` is necessarily what ``json`` writes (see above)."""
    return (data.isascii() and b"\x7f" not in data and b".0000" not in data
            and _EXPONENT.search(data) is None)


def encode_many(values: Sequence[Any]) -> list[bytes]:
    """:func:`encode_json` of each value; the exactness check runs once over all of them
    (a space between two encodings can start no pattern it looks for), so a batch pays
    one scan, not one per value, and when it finds something only the values it was
    found in are encoded again. Raises what orjson raises for a value it cannot encode.

    Each result holds the buffer orjson wrote it in (~4 KB of RSS whatever its length): a
    caller that keeps one long copies it (``b"%b" % (data,)``, exactly its length)."""
    encoded = list(map(orjson.dumps, values))
    joined = b" ".join(encoded)
    if _same_as_json(joined):
        return encoded
    ends = list(accumulate([len(data) + 1 for data in encoded]))  # each one's end + space
    for index in {bisect_right(ends, match.start()) for match in _SUSPECT.finditer(joined)}:
        encoded[index] = _ENCODER.encode(values[index]).encode()
    return encoded


def encode_text(text: str) -> bytes:
    """:func:`encode_json` for a string (no float to look for)."""
    data = orjson.dumps(text)
    if data.isascii() and b"\x7f" not in data:
        return data
    return _ENCODER.encode(text).encode()


#: ``42[<event>,`` of the events of namespace ``/`` (bounded).
_names: dict[str, bytes] = {}


def _prefix(event: str, namespace: str) -> bytes:
    if namespace != "/":
        return b"42" + namespace.encode() + b",[" + encode_json(event) + b","
    if len(_names) >= MAX_CACHED_NAMES:
        _names.clear()
    prefix = _names[event] = b"42[" + encode_json(event) + b","
    return prefix


def event_frame(event: str, body: bytes, offset: str | None, namespace: str = "/") -> bytes:
    """The WebSocket text frame of the Engine.IO message carrying the Socket.IO EVENT
    packet for ``body`` (a payload encoded by :func:`encode_json`) and ``offset``: what
    python-socketio sends for ``emit(event, payload)`` (or ``emit(event, (payload,
    offset))``), byte for byte, framed in the same step (a long-polling recipient gets
    :func:`~realtime.transport.websocket.text_payload` of it).

    Event names and namespaces repeat, so their encoded prefix is kept (bounded)."""
    prefix = _names.get(event) if namespace == "/" else None
    if prefix is None:
        prefix = _prefix(event, namespace)
    tail = b"]" if offset is None else b',"' + offset.encode() + b'"]'
    size = len(prefix) + len(body) + len(tail)
    head = HEADER_16(0x81, 126, size) if 126 <= size < 1 << 16 else text_header(size)
    return b"".join((head, prefix, body, tail))
