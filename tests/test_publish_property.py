"""Property: whatever a publisher sends to ``POST /api/v1/publish`` is either delivered intact
to real subscribers (Socket.IO and SSE) or refused with a 4xx in the uniform error shape;
never a 5xx, never a traceback in the log.

Generated events are deep, wide, unicode, huge, of wrong types, with reserved and injected
names. One real in-process server runs on its own event-loop thread for all examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.routing import MAX_DEPTH, RESERVED_EVENTS
from support.clients import Recorder, connected
from support.logs import Captured, captured_logs
from support.server import Running, run_server, service_token, token
from support.sse import SSEClient, sse

T = TypeVar("T")
ROOM = "user:prop"
MAX_BYTES = 256 * 1024

# --- what a publisher may send ----------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25)


def nested(depth: int) -> Any:
    value: Any = {}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


data_dicts = st.one_of(
    st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    st.one_of(st.integers(1, 40), st.integers(1, 300)).map(  # around 32 and 254
        lambda depth: {"deep": nested(depth)}),
    st.integers(1_000, 30_000).map(lambda n: {"wide": list(range(n))}),
    st.integers(1, 150_000).map(lambda n: {"huge": "\u00e9\U0001f600x" * (n // 3)}),
)
data_values = data_dicts | json_values  # json_values: wrong types (lists, strings, numbers)
safe_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}", fullmatch=True)
names = st.one_of(
    safe_names,
    st.sampled_from(sorted(RESERVED_EVENTS)),
    st.text(max_size=70),
    st.tuples(st.sampled_from(["tick", "news"]), st.sampled_from(["\n", "\r", "\r\n"]),
              st.sampled_from(["data: {}", "id: 1-1", "event: message", ""]))
    .map("".join),
    scalars,
)
safe_rooms = st.lists(st.sampled_from(["user:other", "role:x", "order:1"]), max_size=3).map(
    lambda extra: [ROOM, *extra])
rooms = st.one_of(
    safe_rooms,
    st.lists(st.text(max_size=210), max_size=3).map(lambda extra: [ROOM, *extra]),
    json_values,
)
bad_ids = st.one_of(st.none(), st.booleans(), st.just(""), st.text(min_size=201, max_size=210),
                    st.lists(scalars, max_size=2), st.integers(2**53, 2**63),
                    st.floats(allow_nan=False, allow_infinity=False).filter(
                        lambda f: not f.is_integer()))


@st.composite
def plausible_events(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed envelopes around hostile payloads: deep, wide, huge, unicode."""
    event_id = str(uuid.uuid4())
    if draw(st.integers(0, 3)) == 0:
        return {"id": event_id, "type": "USER_UPDATED", "userId": "prop",
                "updates": draw(data_dicts)}
    return {"id": event_id, "type": "PUSH", "event": draw(safe_names), "rooms": draw(safe_rooms),
            "data": draw(data_dicts)}


@st.composite
def hostile_events(draw: st.DrawFn) -> Any:
    """Anything in every field: wrong types, reserved and injected names, bad ids."""
    event_id: Any = str(uuid.uuid4()) if draw(st.integers(0, 9)) else draw(bad_ids)
    kind = draw(st.sampled_from(["PUSH", "PUSH", "PUSH", "USER_UPDATED", "wrong"]))
    if kind == "USER_UPDATED":
        return {"id": event_id, "type": kind, "userId": "prop", "updates": draw(data_values)}
    event: dict[str, Any] = {"id": event_id, "type": "PUSH" if kind == "PUSH" else
                             draw(scalars | st.sampled_from(["push", "NOPE"])),
                             "event": draw(names), "rooms": draw(rooms)}
    if draw(st.booleans()):
        event["data"] = draw(data_values)
    return event


events = plausible_events() | hostile_events()
bodies = st.one_of(
    plausible_events(),
    hostile_events(),
    st.lists(events, min_size=1, max_size=3),
    json_values,  # not an event at all
    st.binary(max_size=40),  # not JSON at all (sent as is)
)

# --- one server for all examples -------------------------------------------------------


class Harness:
    """A server, a Socket.IO client and an SSE client on a private event-loop thread."""

    def __init__(self, logs: Captured) -> None:
        self.logs = logs
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stack = contextlib.AsyncExitStack()
        self.published: set[str] = set()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        self.srv: Running = await self.stack.enter_async_context(run_server(
            max_request_bytes=MAX_BYTES, publish_rate_per_second=1e6, publish_burst=10**6))
        self.socket: Recorder = await self.stack.enter_async_context(
            connected(self.srv.url, token("prop")))
        self.stream: SSEClient = await self.stack.enter_async_context(
            sse(self.srv.url, token("prop")))
        self.session = await self.stack.enter_async_context(aiohttp.ClientSession())

    async def post(self, body: bytes) -> tuple[int, str]:
        async with self.session.post(
                f"{self.srv.url}/api/v1/publish", data=body,
                headers={"Authorization": f"Bearer {service_token()}",
                         "Content-Type": "application/json"}) as response:
            return response.status, await response.text()

    async def delivered(self, event_id: str) -> tuple[tuple[str, Any], tuple[str, Any]]:
        """The (event, payload) of ``event_id`` as the Socket.IO and the SSE client got it."""
        async with asyncio.timeout(10):
            while True:
                by_socket = [(n, d) for n, d in self.socket.events
                             if isinstance(d, dict) and d.get("eventId") == event_id]
                by_stream = [(f.event, f.data) for f in self.stream.frames
                             if isinstance(f.data, dict) and f.data.get("eventId") == event_id]
                if by_socket and by_stream:
                    return by_socket[0], by_stream[0]
                await asyncio.sleep(0.005)


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with captured_logs() as logs:
        harness = Harness(logs)
        harness.thread.start()
        harness.run(harness.start())
        try:
            yield harness
        finally:
            harness.run(harness.stack.aclose())
            harness.loop.call_soon_threadsafe(harness.loop.stop)
            harness.thread.join(5)
    logs.assert_clean()


def expected_delivery(event: dict[str, Any]) -> tuple[str, Any]:
    """The client event name and payload (without eventId/position) an event must produce."""
    if event["type"] == "USER_UPDATED":
        return "user_updated", {"userId": "prop", "updates": event["updates"], "updatedAt": None}
    data = event.get("data") or {}
    return event["event"], {k: v for k, v in data.items() if k not in ("eventId", "position")}


def check(harness: Harness, body: Any) -> None:
    # stdlib json: unlike orjson it can write more than 254 levels
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    status, text = harness.run(harness.post(raw))
    assert status < 500, (status, text[:500])
    answer = orjson.loads(text)
    if status != 202:
        assert 400 <= status < 500
        assert set(answer) == {"error"}, answer
        assert set(answer["error"]) == {"code", "message", "details"}, answer
        assert isinstance(answer["error"]["code"], str) and answer["error"]["message"]
    else:
        assert set(answer) == {"accepted", "duplicates"}
        assert not set(answer["accepted"]) & set(answer["duplicates"])
        assert set(answer["duplicates"]) <= harness.published
        sent = {str(e["id"]): e for e in (body if isinstance(body, list) else [body])}
        for event_id in answer["accepted"]:
            harness.published.add(event_id)
            name, payload = expected_delivery(sent[event_id])
            for got_name, got in harness.run(harness.delivered(event_id)):
                assert got_name == name
                assert got.pop("eventId") == event_id and isinstance(got.pop("position"), str)
                assert got == payload
    harness.logs.assert_clean()


@pytest.mark.timeout(120)
@settings(max_examples=500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(body=bodies)
def test_every_publish_is_delivered_intact_or_refused_cleanly(harness: Harness,
                                                              body: Any) -> None:
    check(harness, body)


def test_the_depth_limit_and_the_size_limit_are_reached_by_the_generator(
        harness: Harness) -> None:
    """The edges the property relies on, checked explicitly (the generator may miss them)."""
    started = time.monotonic()
    at_limit = {"id": "edge-1", "type": "PUSH", "event": "tick", "rooms": [ROOM],
                "data": {"deep": nested(MAX_DEPTH - 2)}}
    check(harness, at_limit)
    assert "edge-1" in harness.published
    check(harness, {**at_limit, "id": "edge-2", "data": {"deep": nested(MAX_DEPTH - 1)}})
    assert "edge-2" not in harness.published
    near_size = {"id": "edge-3", "type": "PUSH", "event": "tick", "rooms": [ROOM],
                 "data": {"blob": "x" * (MAX_BYTES - 200)}}
    check(harness, near_size)
    assert "edge-3" in harness.published
    check(harness, {**near_size, "id": "edge-4", "data": {"blob": "x" * MAX_BYTES}})
    assert "edge-4" not in harness.published
    assert time.monotonic() - started < 20
