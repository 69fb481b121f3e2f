"""The one validation step of every ingest path: what it accepts can be encoded and delivered.

Depth is bounded (orjson decodes 1,024 levels but encodes only 254), PUSH event names have a
safe character set and length, and names reserved by Socket.IO, SSE or the server's own
events are refused. A refused event is a 400 in the uniform shape, claims no id and logs no
traceback.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.routing import MAX_DEPTH, RESERVED_EVENTS, ROUTES, Router, RoutingError
from realtime.routing.shape import text_within
from realtime.routing.table import EventType, Route
from support.clients import connected, quiet
from support.logs import captured_logs
from support.server import run_server, service_token, token
from support.sse import sse

GATEWAYS = Path(__file__).resolve().parent.parent / "realtime" / "gateways"


def push(event_id: str, name: str = "news", data: Any = None) -> dict[str, Any]:
    return {"id": event_id, "type": "PUSH", "event": name, "rooms": ["user:reader"],
            "data": {"n": 1} if data is None else data}


def deep_body(event_id: str, depth: int) -> bytes:
    """A PUSH event nested ``depth`` levels deep in total (the event object is level 1);
    built as bytes because orjson cannot encode more than 254 levels."""
    inner = depth - 1  # levels below the event object, all inside ``data``
    return (b'{"id":' + orjson.dumps(event_id) + b',"type":"PUSH","event":"news",'
            b'"rooms":["user:reader"],"data":' + b'{"a":' * (inner - 1) + b"{}"
            + b"}" * (inner - 1) + b"}")


async def post(url: str, body: bytes) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/api/v1/publish", data=body,
            headers={"Authorization": f"Bearer {service_token()}",
                     "Content-Type": "application/json"}) as response:
        text = await response.text()
        return response.status, orjson.loads(text), response.content_type


def assert_refused(status: int, body: Any, reason: str) -> None:
    assert status == 400, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "invalid_event"
    assert body["error"]["details"][0]["reason"] == reason, body


def test_depth_is_measured_over_the_whole_event_without_recursion() -> None:
    router = Router()
    at_limit = orjson.loads(deep_body("ok", MAX_DEPTH))
    assert router.route(at_limit).event_id == "ok"
    for depth in (MAX_DEPTH + 1, 255, 1024):
        with pytest.raises(RoutingError) as refused:
            router.route(orjson.loads(deep_body("d", depth)))
        assert refused.value.reason == "too_deep"
    # depth counts lists and objects anywhere in the event, not only in ``data``
    wide = {"id": "w", "type": "USER_UPDATED", "userId": "u", "updates": {"x": [[[[1]]]]}}
    assert router.route(wide).event_id == "w"
    too_deep_list = {**wide, "extra": orjson.loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)}
    with pytest.raises(RoutingError) as refused:
        router.route(too_deep_list)
    assert refused.value.reason == "too_deep"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 255, 1024])
async def test_deep_event_is_a_400_and_its_id_stays_free(depth: int) -> None:
    with captured_logs() as logs:
        async with run_server() as srv, connected(srv.url, token("reader")) as client:
            status, body, content_type = await post(srv.url, deep_body("deep", depth))
            assert content_type == "application/json"
            assert_refused(status, body, "too_deep")
            # the refused event claimed nothing: a corrected retry with the same id is delivered
            status, answer = await srv.publish(push("deep"))
            assert status == 202 and answer == {"accepted": ["deep"], "duplicates": []}
            assert [e["eventId"] for e in await client.wait_for("news")] == ["deep"]
    logs.assert_clean()


async def test_event_at_the_depth_limit_is_delivered_intact() -> None:
    async with run_server() as srv, connected(srv.url, token("reader")) as client, \
            sse(srv.url, token("reader")) as stream:
        status, _, _ = await post(srv.url, deep_body("limit", MAX_DEPTH))
        assert status == 202
        expected = orjson.loads(deep_body("limit", MAX_DEPTH))["data"]
        for got in [(await client.wait_for("news"))[0], (await stream.wait_for("news"))[0]]:
            assert {k: v for k, v in got.items() if k not in ("eventId", "position")} == expected


async def test_batch_with_a_deep_event_publishes_nothing() -> None:
    with captured_logs() as logs:
        async with run_server() as srv, connected(srv.url, token("reader")) as client:
            body = b"[" + orjson.dumps(push("good")) + b"," + deep_body("bad", 300) + b"]"
            status, answer, _ = await post(srv.url, body)
            assert_refused(status, answer, "too_deep")
            assert answer["error"]["details"][0]["index"] == 1
            await quiet()
            assert client.events == []
            status, answer = await srv.publish(push("good"))
            assert answer == {"accepted": ["good"], "duplicates": []}
    logs.assert_clean()


BAD_NAMES = ["1abc", "_x", "a b", "a\nb", "a\rb", "news\ndata: {}\nid: 9", "x" * 65, "é",
             "a/b", "a\tb", "a\u2028b", "a;b", "a\x00b"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_unsafe_event_names_are_refused(name: str) -> None:
    with captured_logs() as logs:
        async with run_server() as srv:
            status, body = await srv.publish(push("n", name))
            assert_refused(status, body, "invalid_event_name")
    logs.assert_clean()


@pytest.mark.parametrize("name", [42, ["news"], {"a": 1}, True, 1.5])
def test_event_name_of_the_wrong_type_is_refused(name: object) -> None:
    with pytest.raises(RoutingError) as refused:
        Router().route(push("n", name))  # type: ignore[arg-type]
    assert refused.value.reason == "invalid_event_name"


@pytest.mark.parametrize("name", ["", None])
def test_missing_event_name_is_refused(name: object) -> None:
    with pytest.raises(RoutingError) as refused:
        Router().route(push("n", name))  # type: ignore[arg-type]
    assert refused.value.reason == "missing_fields"


@pytest.mark.parametrize("name", ["a", "news.v2", "ns:evt-1", "Tick_2", "x" * 64])
def test_safe_event_names_are_accepted(name: str) -> None:
    assert Router().route(push("n", name)).deliveries[0].event == name


async def test_every_reserved_name_is_refused_at_publish() -> None:
    async with run_server() as srv:
        for name in sorted(RESERVED_EVENTS):
            status, body = await srv.publish(push(f"r-{name}", name))
            assert_refused(status, body, "reserved_event")


def _emitted_names() -> set[str]:
    """String literals the gateways pass as the event name to ``emit(...)``/``frame(...)``."""
    names: set[str] = set()
    for path in GATEWAYS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if called in ("emit", "frame", "_emit", "send_event") and \
                    isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
    return names


def test_reserved_names_cover_everything_the_server_emits_itself() -> None:
    emitted = _emitted_names()
    assert {"token_expired", "recovered", "reconnect", "auth_error"} <= emitted  # scan works
    assert emitted <= RESERVED_EVENTS, emitted - RESERVED_EVENTS
    routed = {route.event for row in ROUTES.values() for route in row.routes}
    assert routed <= RESERVED_EVENTS
    required = {"connect", "connect_error", "disconnect", "disconnecting", "newListener",
                "removeListener", "message", "error", "token_expired", "recovered",
                "reconnect", "server_shutdown", "authenticated", "auth_error", "order_status",
                "update_accepted"}
    assert required <= RESERVED_EVENTS


async def test_accepted_and_duplicates_are_disjoint() -> None:
    async with run_server() as srv:
        assert await srv.publish(push("d1")) == (202, {"accepted": ["d1"], "duplicates": []})
        assert await srv.publish(push("d1")) == (202, {"accepted": [], "duplicates": ["d1"]})
        status, body = await srv.publish([push("d2"), push("d1"), push("d2")])
        assert (status, body) == (202, {"accepted": ["d2"], "duplicates": ["d1"]})


# --- the fast paths of validation agree with the exact ones ------------------------------

def depth(value: object) -> int:
    """Levels of objects and lists, the value itself counting as one (recursive: test only)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


json_text = st.text(alphabet=st.sampled_from('ab"\\[]{}:, \u00e9'), max_size=6)
json_tree = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=40)


@given(json_tree, st.integers(1, 40), st.booleans())
@settings(max_examples=400, deadline=None)
def test_text_within_vouches_only_for_text_that_is_shallow_enough(
        value: Any, limit: int, stdlib: bool) -> None:
    """``text_within`` may say no to a shallow text, never yes to a deep one, whatever the
    strings hold (brackets, quotes, escapes) and however the text was written."""
    raw = json.dumps(value).encode() if stdlib else orjson.dumps(value)
    if text_within(raw, limit):
        assert depth(value) <= limit


def test_text_within_on_the_nesting_limit() -> None:
    for levels in range(1, 40):
        raw = b"[" * levels + b"]" * levels
        assert text_within(raw, MAX_DEPTH) == (levels <= MAX_DEPTH)
    assert text_within(orjson.dumps([push(f"p{n}") for n in range(100)]))  # a batch: 3
    assert text_within(deep_body("deep", MAX_DEPTH - 1))  # a pass may count one level more
    assert not text_within(deep_body("too-deep", MAX_DEPTH + 1))


@given(st.lists(json_tree, min_size=1, max_size=8))
@settings(max_examples=200, deadline=None)
def test_a_shallow_batch_routes_like_one_checked_event_at_a_time(datas: list[Any]) -> None:
    """What a request whose text passed ``text_within`` gets from the router is what it
    gets with every event walked: the same events refused with the same reasons."""
    events = [{"id": f"s{n}", "type": "PUSH", "event": "news", "rooms": ["user:a"],
               "data": data} for n, data in enumerate(datas)]
    raw = orjson.dumps(events)
    router = Router()

    def outcome(event: Any, shallow: bool) -> Any:
        try:
            routed = router.route(event, shallow)
        except RoutingError as exc:
            return exc.reason
        return [(d.event, d.rooms, d.payload) for d in routed.deliveries]

    if text_within(raw):
        assert [outcome(e, True) for e in events] == [outcome(e, False) for e in events]


@pytest.mark.parametrize("room", ["order:{orderId}", "user:{name}"])
def test_a_row_whose_room_names_an_unchecked_or_optional_field_is_refused_when_made(
        room: str) -> None:
    """Only required, plain-id-checked fields may make a room (else a missing or hostile
    value would reach a room name at run time)."""
    with pytest.raises(ValueError, match="room field"):
        EventType(required=("userId", "name"), routes=(Route("x", (room,), {}),))
    EventType(required=("userId",), routes=(Route("x", ("user:{userId}",), {}),))
