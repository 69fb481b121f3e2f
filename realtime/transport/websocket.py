"""The server side of WebSocket (RFC 6455) as a sans-I/O codec: bytes in, events out.

Why: the frame reader that lived inside the lean connection was quadratic on fragmented
messages (40,000 one-byte continuation frames froze the server for 17 s), never bounded
empty fragments and broke the close rules (1005 echoed on the wire, 1000 answered to a
malformed close). This codec holds no socket and no event loop, so every rule is unit-tested,
fuzzed and compared with a reference implementation (wsproto) over generated frames.

- Linear in the input: a read offset into the buffer, compacted once per :meth:`Reader.feed`;
  a running byte count of the open message; UTF-8 decoded incrementally, fragment by fragment
  (so a bad text fragment fails at once, RFC 6455 §8.1).
- Bounded: a message over ``max_message`` bytes is refused (1009) as soon as a frame header
  announces it, and a message of more than ``max_fragments`` frames too (1009 as well: the
  limit bounds the work one message costs, empty fragments included). The buffer keeps at
  most one incomplete frame beyond what a single ``feed`` brings.
- Strict: each violation of RFC 6455 §5, §7.4 or §8.1 fails the connection with its close
  code. Lengths must use the minimal encoding (§5.2: "the minimal number of bytes MUST be
  used"; wsproto agrees). No extension is negotiated, so an RSV bit is an error.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_OPCODES = frozenset((CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG))
_MAX_CONTROL = 125
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "the close frame had no code"
    ABNORMAL = 1006  # never on the wire: "the connection dropped without a close frame"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011


#: Codes that only exist locally (RFC 6455 §7.4.1): 1005, 1006 and 1015 (TLS failure).
_LOCAL_ONLY = frozenset((CloseCode.NO_STATUS, CloseCode.ABNORMAL, 1015))


def close_code_allowed(code: int) -> bool:
    """Whether a close frame may carry ``code``: RFC 6455's and IANA's assigned codes
    (1000-1003, 1007-1014) and the registered/private ranges 3000-4999. 1004 is reserved,
    1005/1006/1015 are local-only, the rest of 1000-2999 is unassigned."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Message:
    """A whole text (``str``) or binary (``bytes``) message, reassembled from its fragments."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame; ``code`` is :attr:`CloseCode.NO_STATUS` when it had no payload."""

    code: int
    reason: str


Event: TypeAlias = Message | Ping | Pong | Close


class ProtocolError(Exception):
    """The peer broke the protocol: fail the connection with a close frame carrying ``code``.

    ``events`` are those the failing :meth:`Reader.feed` parsed before the violation.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.events: list[Event] = []

    def __str__(self) -> str:
        return f"{self.code} {self.reason}"


def _fail(reason: str, code: int = CloseCode.PROTOCOL_ERROR) -> ProtocolError:
    return ProtocolError(int(code), reason)


class Reader:
    """Client → server frames to events: one reader per connection."""

    def __init__(self, max_message: int, max_fragments: int = 1024) -> None:
        self.max_message = max_message
        self.max_fragments = max_fragments
        self._buffer = bytearray()
        self._error: ProtocolError | None = None
        self._closed = False
        # The open (fragmented) message: its opcode (0: none), parts, bytes and frames so far.
        self._opcode = 0
        self._text: list[str] = []
        self._binary: list[bytes] = []
        self._decoder = _Utf8Decoder()
        self._size = 0
        self._frames = 0

    def feed(self, data: bytes) -> list[Event]:
        """The events of every frame completed by ``data``. Raises :class:`ProtocolError` on
        the first violation (and again on every later call); after a :class:`Close`, returns
        nothing more."""
        if self._error is not None:
            raise ProtocolError(self._error.code, self._error.reason)
        if self._closed:
            return []
        buffer = self._buffer
        buffer += data
        events: list[Event] = []
        offset = 0
        try:
            while not self._closed:
                end = self._frame(buffer, offset, events)
                if end is None:
                    break
                offset = end
        except ProtocolError as error:
            error.events = events
            self._error, self._buffer = error, bytearray()
            raise
        if self._closed:
            self._buffer = bytearray()
        elif offset:
            del buffer[:offset]
        return events

    def _frame(self, buffer: bytearray, at: int, events: list[Event]) -> int | None:
        """Parse the frame starting at ``at``: its end, or ``None`` while it is incomplete."""
        if len(buffer) - at < 2:
            return None
        first, second = buffer[at], buffer[at + 1]
        fin, opcode, size = bool(first & 0x80), first & 0x0F, second & 0x7F
        if first & 0x70:
            raise _fail("RSV bit set, no extension negotiated")
        if opcode not in _OPCODES:
            raise _fail(f"reserved opcode {opcode:#x}")
        if not second & 0x80:
            raise _fail("client frame not masked")
        if opcode >= CLOSE and (not fin or size > _MAX_CONTROL):
            raise _fail("control frame fragmented or over 125 bytes")
        if opcode == CONTINUATION and not self._opcode:
            raise _fail("continuation frame without a message")
        if opcode in (TEXT, BINARY) and self._opcode:
            raise _fail("new message inside a fragmented one")
        head = at + 2
        if size >= 126:
            width = 2 if size == 126 else 8
            if len(buffer) < head + width:
                return None
            size = int.from_bytes(buffer[head:head + width], "big")
            head += width
            if size >> 63:
                raise _fail("64-bit length with the most significant bit set")
            if size < (126 if width == 2 else 1 << 16):
                raise _fail("length not in its minimal encoding")
        if opcode < CLOSE:
            if self._size + size > self.max_message:
                raise _fail(f"message over {self.max_message} bytes", CloseCode.TOO_BIG)
            if self._frames >= self.max_fragments:
                raise _fail(f"message in over {self.max_fragments} frames", CloseCode.TOO_BIG)
        end = head + 4 + size
        if len(buffer) < end:
            return None
        payload = _unmask(buffer[head + 4:end], buffer[head:head + 4])
        event = self._control(opcode, payload) if opcode >= CLOSE else self._data(
            opcode, fin, payload)
        if event is not None:
            events.append(event)
        return end

    def _data(self, opcode: int, fin: bool, payload: bytes) -> Message | None:
        if opcode == TEXT and fin:  # a whole text message in one frame: the common case
            try:
                return Message(payload.decode())
            except UnicodeDecodeError:
                raise _fail("text message not UTF-8", CloseCode.INVALID_DATA) from None
        if opcode != CONTINUATION:
            self._opcode = opcode
        self._size += len(payload)
        self._frames += 1
        if self._opcode == BINARY:
            self._binary.append(payload)
        else:
            try:
                self._text.append(self._decoder.decode(payload, fin))
            except UnicodeDecodeError:
                raise _fail("text message not UTF-8", CloseCode.INVALID_DATA) from None
        if not fin:
            return None
        if self._opcode == BINARY:
            message = Message(b"".join(self._binary))
        else:
            message = Message("".join(self._text))
            self._decoder.reset()
        self._text, self._binary = [], []
        self._opcode = self._size = self._frames = 0
        return message

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        self._closed = True
        if not payload:
            return Close(CloseCode.NO_STATUS, "")
        if len(payload) == 1:
            raise _fail("close payload of 1 byte")
        code = int.from_bytes(payload[:2], "big")
        if not close_code_allowed(code):
            raise _fail(f"close code {code} not allowed on the wire")
        try:
            return Close(code, payload[2:].decode())
        except UnicodeDecodeError:
            raise _fail("close reason not UTF-8", CloseCode.INVALID_DATA) from None


def _unmask(data: bytearray, mask: bytearray) -> bytes:
    """XOR ``data`` with the repeated 4-byte ``mask``, as one big-integer operation."""
    size = len(data)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


_HEAD = struct.Struct("!BB").pack
#: ``HEADER_16(first byte, 126, size)``: the header of a frame of 126..65,535 bytes, the size
#: of most broadcast frames (built inline where every call counts).
HEADER_16 = struct.Struct("!BBH").pack
_HEAD64 = struct.Struct("!BBQ").pack


def _frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    size = len(payload)
    if size < 126:
        return _HEAD(0x80 | opcode, size) + payload
    if size < 1 << 16:
        return HEADER_16(0x80 | opcode, 126, size) + payload
    return _HEAD64(0x80 | opcode, 127, size) + payload


def text_header(size: int) -> bytes:
    """The header of an unmasked text frame of ``size`` bytes (every broadcast frame is
    one: the common sizes first)."""
    if 126 <= size < 1 << 16:
        return HEADER_16(0x81, 126, size)
    if size < 126:
        return _HEAD(0x81, size)
    return _HEAD64(0x81, 127, size)


def text_payload(frame: bytes) -> bytes:
    """The payload of an unmasked server frame (its header is 2, 4 or 10 bytes), such as
    :func:`~realtime.transport.payload.event_frame` builds."""
    size = frame[1] & 0x7F
    return frame[2:] if size < 126 else frame[4:] if size == 126 else frame[10:]


def frame(message: str | bytes) -> bytes:
    """One unmasked server frame: text for ``str``, binary for ``bytes``."""
    if isinstance(message, str):
        return _frame(TEXT, message.encode())
    return _frame(BINARY, bytes(message))


def close_frame(code: int | None = None, reason: str = "") -> bytes:
    """A close frame. ``None`` and the local-only codes (1005, 1006, 1015) give an empty
    payload (a reason needs a code); the reason is cut to fit 125 bytes, on a character
    boundary. Raises :class:`ValueError` for a code no endpoint may send."""
    if code is None or code in _LOCAL_ONLY:
        return _frame(CLOSE, b"")
    if not close_code_allowed(code):
        raise ValueError(f"close code {code} may not be sent")
    text = reason.encode()[:_MAX_CONTROL - 2].decode(errors="ignore").encode()
    return _frame(CLOSE, code.to_bytes(2, "big") + text)


def close_reply(close: Close) -> bytes:
    """The answer to a peer's close: its code echoed (an empty payload when it sent none)."""
    return close_frame(close.code if close_code_allowed(close.code) else None)


def pong_frame(payload: bytes) -> bytes:
    """The answer to a :class:`Ping`: a pong with the same payload (at most 125 bytes)."""
    if len(payload) > _MAX_CONTROL:
        raise ValueError("control frame payload over 125 bytes")
    return _frame(PONG, payload)


def accept_key(sec_websocket_key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1(sec_websocket_key.encode() + _GUID).digest()
    return base64.b64encode(digest).decode()


def _tokens(value: str) -> set[str]:
    return {token.strip().lower() for token in value.split(",")}


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:  # binascii.Error, or a non-ASCII key
        return False


def handshake_response(headers: Mapping[str, str]) -> bytes | None:
    """The ``101 Switching Protocols`` answer to a valid upgrade request (RFC 6455 §4.2.1),
    else ``None``. Header names match in any case; no extension or subprotocol is
    negotiated (permessage-deflate is refused by leaving it out)."""
    fields = {name.lower(): value for name, value in headers.items()}
    key = fields.get("sec-websocket-key", "").strip()
    if ("websocket" not in _tokens(fields.get("upgrade", ""))
            or "upgrade" not in _tokens(fields.get("connection", ""))
            or fields.get("sec-websocket-version", "").strip() != "13"
            or not _valid_key(key)):
        return None
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n").encode()
