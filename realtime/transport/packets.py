"""Strict decoding of Socket.IO v5 packets sent by clients (sans-I/O).

``<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`` — written from the
``socketio/socket.io-protocol`` document. Anything that does not fit the packet's type
is a :class:`PacketError`, and the session that sent it is closed: python-socketio's own
decoder is lenient (``42{}`` or ``42abc[...]`` reach the handlers, then fail with a
traceback), so client input is decoded here and only well-formed packets go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK = range(7)

#: Nesting allowed in a client payload (orjson decodes 1,024 levels but encodes 254).
MAX_DEPTH = 32
#: Binary attachments allowed in one packet.
MAX_ATTACHMENTS = 10
#: Digits of an ack id (fits a JavaScript safe integer).
MAX_ID_DIGITS = 15
MAX_NAMESPACE = 128


class PacketError(ValueError):
    """A client packet that breaks the protocol."""


@dataclass(slots=True)
class Packet:
    type: int
    namespace: str = "/"
    id: int | None = None
    data: Any = None
    attachments: int = 0
    #: Binary attachments received so far (binary packets only).
    received: list[bytes] = field(default_factory=list)

    @property
    def event(self) -> str:
        name: str = self.data[0]
        return name

    def add_attachment(self, data: bytes) -> bool:
        """Take one binary attachment; ``True`` once the packet is whole."""
        self.received.append(data)
        if len(self.received) < self.attachments:
            return False
        self.data = _fill(self.data, self.received)
        return True


def decode(text: str) -> Packet:
    """Decode one client packet, or raise :class:`PacketError`."""
    kind = text[:1]
    if kind not in ("0", "1", "2", "3", "5", "6"):
        raise PacketError(f"unknown packet type {kind!r}")
    packet = Packet(int(kind))
    i = 1
    if packet.type in (BINARY_EVENT, BINARY_ACK):
        dash = text.find("-", i)
        count = text[i:dash]
        if dash < 0 or not (count.isascii() and count.isdigit()) or len(count) > 2:
            raise PacketError("invalid attachment count")
        packet.attachments = int(count)
        if not 1 <= packet.attachments <= MAX_ATTACHMENTS:
            raise PacketError("invalid attachment count")
        i = dash + 1
    if text.startswith("/", i):
        comma = text.find(",", i)
        end = len(text) if comma < 0 else comma
        packet.namespace = text[i:end]
        if len(packet.namespace) > MAX_NAMESPACE or not packet.namespace.isprintable():
            raise PacketError("invalid namespace")
        i = end + 1
    start = i
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    if i > start:
        if i - start > MAX_ID_DIGITS:
            raise PacketError("ack id too long")
        packet.id = int(text[start:i])
    if i < len(text):
        packet.data = _json(text[i:])
    _check_shape(packet)
    return packet


def _json(payload: str) -> Any:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise PacketError("payload is not JSON") from None
    if payload.count("[") + payload.count("{") > MAX_DEPTH and too_deep(data, MAX_DEPTH):
        raise PacketError(f"payload nested deeper than {MAX_DEPTH}")
    return data


def _check_shape(packet: Packet) -> None:
    kind, data = packet.type, packet.data
    if kind == CONNECT:
        if packet.id is not None or not (data is None or isinstance(data, dict)):
            raise PacketError("CONNECT takes an object or nothing")
    elif kind == DISCONNECT:
        if packet.id is not None or data is not None:
            raise PacketError("DISCONNECT takes no payload")
    elif kind in (EVENT, BINARY_EVENT):
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            raise PacketError("EVENT takes an array starting with the event name")
    elif packet.id is None or not isinstance(data, list):  # ACK, BINARY_ACK
        raise PacketError("ACK takes an id and an array")


def too_deep(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists/objects more than ``limit`` levels (iterative)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        if depth > limit:
            return True
        stack.extend((item, depth + 1) for item in value
                     if isinstance(item, dict | list))
    return False


def _fill(data: Any, attachments: list[bytes]) -> Any:
    """Replace ``{"_placeholder": true, "num": N}`` by attachment N."""
    if isinstance(data, list):
        return [_fill(item, attachments) for item in data]
    if isinstance(data, dict):
        if data.get("_placeholder") is True and "num" in data:
            num = data["num"]
            if not isinstance(num, int) or isinstance(num, bool) \
                    or not 0 <= num < len(attachments):
                raise PacketError("invalid attachment placeholder")
            return attachments[num]
        return {key: _fill(value, attachments) for key, value in data.items()}
    return data
