"""A delivered event is the frame python-socketio would have encoded, byte for byte.

The Socket.IO manager puts the EVENT packet together around the body the bus encoded
(no decode, no second encode); these tests hold it to python-socketio's own encoding of
the same payload, through a real server and a raw WebSocket, and over generated values.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from socketio import packet

from realtime.transport.payload import encode_json, encode_many
from support.packets import CONNECTED, connect_packet
from support.server import run_server, token
from support.ws import TEXT, RawSocket, opened

#: Payloads where a faster encoder would differ: non-ASCII, DEL, exponents, tiny floats.
PAYLOADS: list[dict[str, Any]] = [
    {"n": 1},
    {},
    {"text": "héllo \u2013 日本 😀", "del": "\x7f", "controls": "\x00\x1f\n\t\"\\/"},
    {"small": 1e-05, "tiny": -2.5e-07, "big": 1e16, "huge": 1.5e300, "plain": 0.1,
     "whole": 5.0, "zero": -0.0, "safe": 2**53 - 1, "negative": -42},
    {"nested": {"a": [1, {"b": None, "c": True, "d": False}], "e": []}, "1e5": "1e5"},
    {"neg": 1e-09, "id": "550e8400-e29b-41d4-a716-446655440000", "tag": "x3e-7y"},
]


async def next_event(ws: RawSocket) -> bytes:
    """The payload bytes of the next Socket.IO EVENT frame (pings answered)."""
    while True:
        opcode, data = await ws.frame()
        if opcode == TEXT and data == b"2":
            ws.send_text("3")
        elif opcode == TEXT and data.startswith(b"42"):
            return data


@pytest.mark.parametrize("bus", ["memory", "redis"])
@pytest.mark.parametrize("recovery", [120.0, 0.0], ids=["recovery-on", "recovery-off"])
async def test_delivered_frames_are_what_python_socketio_would_encode(
        recovery: float, bus: str, request: pytest.FixtureRequest) -> None:
    """With connection-state recovery on (the default), the position follows the payload as
    the event's last argument (``emit(event, (payload, position))``); off, it does not.
    Through Redis the position is put into the body by the reader of the channel."""
    redis = {"redis_url": request.getfixturevalue("redis_server").url} if bus == "redis" else {}
    async with run_server(recovery_seconds=recovery, **redis) as srv, \
            opened(srv.url) as (ws, _):
        ws.send_text(connect_packet(token("alice")))
        assert CONNECTED.fullmatch(await ws.text())
        for n, data in enumerate(PAYLOADS):
            event_id = f"bytes-{n}"
            status, _ = await srv.publish({"id": event_id, "type": "PUSH", "event": "check",
                                           "rooms": ["user:alice"], "data": data})
            assert status == 202
            got = await next_event(ws)
            position = orjson.loads(got[2:])[1]["position"]
            args: list[Any] = [{"eventId": event_id, "position": position, **data}]
            if recovery:
                args.append(position)
            expected = packet.Packet(packet.EVENT, namespace="/",
                                     data=["check", *args]).encode()
            assert got == b"4" + expected.encode(), data


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(JSON)
def test_encode_json_is_json_dumps_with_python_socketio_settings(value: Any) -> None:
    assert encode_json(value) == json.dumps(value, separators=(",", ":")).encode()


@given(st.lists(JSON, max_size=12))
def test_a_batch_is_encoded_as_each_value_alone(values: list[Any]) -> None:
    """One exactness check over the batch; what it flags is encoded again, value by value."""
    assert encode_many(values) == [json.dumps(v, separators=(",", ":")).encode()
                                   for v in values]
