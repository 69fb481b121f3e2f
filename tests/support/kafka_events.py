"""Hypothesis strategies for hostile events, as the raw bytes a publisher would write.

Every case targets the room ``user:u1`` (or fails validation), so a test with a client in
that room can tell "delivered" from "refused". ``ID`` and ``INT_ID`` are placeholders the
test replaces with fresh ids, so no two records ever share one (de-duplication would
otherwise swallow the second).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

ID = "@ID@"
INT_ID = "@INT-ID@"
ROOM = "user:u1"


@dataclass(frozen=True)
class Case:
    """One record to produce; ``must_deliver`` when it is valid by construction."""

    kind: str
    raw: bytes
    must_deliver: bool = False

    def render(self, event_id: str, int_id: int) -> bytes:
        return (self.raw.replace(orjson.dumps(INT_ID), str(int_id).encode())
                .replace(ID.encode(), event_id.encode()))


scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25)
#: JSON values that can never be a valid id, room list, room id or event name (a list of
#: strings could be a valid room list for rooms the client is not in: not observable).
not_a_name = (st.none() | st.booleans() | st.integers(-(10**6), 10**6).map(lambda i: i + 0.5)
              | st.lists(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1),
                         max_size=3)  # JSON writers stop at 64 bits
              | st.dictionaries(st.text(max_size=5), scalars, max_size=3))
event_names = st.text(min_size=1, max_size=30).map(lambda s: f"ev_{s}") | st.text(max_size=120)
safe_names = st.from_regex(r"ev_[a-z0-9_]{1,20}", fullmatch=True)


def push(event: Any = "ev_ok", rooms: Any = (ROOM,), data: Any = None,
         **extra: Any) -> dict[str, Any]:
    value = {"id": ID, "type": "PUSH", "event": event, "rooms": list(rooms), **extra}
    if data is not None:
        value["data"] = data
    return value


def case(kind: str, value: Any, must_deliver: bool = False) -> Case:
    return Case(kind, value if isinstance(value, bytes) else orjson.dumps(value), must_deliver)


def nested(depth: int, leaf: bytes = b"1", as_list: bool = False) -> bytes:
    """``depth`` levels of objects (or lists) around ``leaf``, written by hand: orjson
    refuses to write more than 254 levels."""
    if as_list:
        return b"[" * depth + leaf + b"]" * depth
    return b'{"k":' * depth + leaf + b"}" * depth


def deep_push(depth: int, as_list: bool) -> bytes:
    head = orjson.dumps(push())[:-1]  # the object without its closing brace
    inner = nested(depth, as_list=as_list)
    data = b'{"d":' + inner + b"}"
    return head + b',"data":' + data + b"}"


good = st.builds(lambda name, data: case("good", push(name, [ROOM], data), True),
                 safe_names,
                 st.dictionaries(st.text(max_size=10).filter(
                     lambda k: k not in ("eventId", "position")), json_values, max_size=6))
unicode = st.builds(lambda name, data: case("unicode", push(name, [ROOM], {"s": data})),
                    event_names, st.text(min_size=1, max_size=200))
deep = st.builds(lambda depth, as_list: case("deep", deep_push(depth, as_list)),
                 st.integers(1, 1100), st.booleans())
wide = st.builds(lambda n: case("wide", push(data={f"k{i}": i for i in range(n)})),
                 st.integers(100, 3000))
huge = st.builds(lambda n: case("huge", push(data={"blob": "x" * n})),
                 st.integers(1_000, 80_000))
wrong_types = st.one_of(
    st.builds(lambda v: case("wrong_id", {**push(), "id": v}), not_a_name),
    st.builds(lambda v: case("wrong_type", {**push(), "type": v}), not_a_name),
    st.builds(lambda v: case("wrong_event", push(event=v)), not_a_name),
    st.builds(lambda v: case("wrong_rooms", {**push(), "rooms": v}),
              not_a_name | st.just([]) | st.lists(not_a_name, min_size=1, max_size=3)),
    st.builds(lambda v: case("wrong_data", push(data=v)),
              st.lists(scalars, max_size=3) | st.text(max_size=5)
              | st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: case("wrong_user", {"id": ID, "type": "USER_UPDATED", "userId": v,
                                            "updates": {"a": 1}}), not_a_name),
)
user_updates = st.builds(
    lambda updates, at: case("user_updated", {"id": INT_ID, "type": "USER_UPDATED",
                                              "userId": "u1", "updates": updates,
                                              "updatedAt": at}),
    json_values, scalars)
missing = st.sampled_from(["id", "type"]).map(
    lambda key: case(f"missing_{key}", {k: v for k, v in push().items() if k != key}))
unknown = st.text(max_size=40).filter(lambda t: t not in ("PUSH", "USER_UPDATED")).map(
    lambda t: case("unknown_type", {**push(), "type": t}))
not_json = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b"NaN", b'{"a":1}x', b'"\xff"', b'{"id":"\\ud800"}',
                     b'{"id":1e400}', b"[1,2", b"\x00"]),
    json_values.filter(lambda v: not isinstance(v, dict)).map(orjson.dumps),
).map(lambda raw: case("not_json", raw))

cases = st.one_of(good, unicode, deep, wide, huge, wrong_types, user_updates, missing,
                  unknown, not_json)
