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
from collections.abc import Sequence
from typing import Any

import orjson

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
    one scan, not one per value. Raises what orjson raises for a value it cannot encode.

    Each result holds the buffer orjson wrote it in (~4 KB of RSS whatever its length): a
    caller that keeps one long copies it (``b"%b" % (data,)``, exactly its length)."""
    encoded = list(map(orjson.dumps, values))
    if _same_as_json(b" ".join(encoded)):
        return encoded
    return [data if _same_as_json(data) else _ENCODER.encode(value).encode()
            for data, value in zip(encoded, values, strict=True)]


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
