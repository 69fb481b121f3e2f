"""Bounded nesting: an accepted event must be encodable by every encoder on its way out.

``orjson.loads`` accepts 1,024 levels of nesting but ``orjson.dumps`` refuses more than 254,
and client libraries have limits of their own; :data:`MAX_DEPTH` leaves ample room for the
few levels the transports add around a payload. Size is bounded before decoding (the
ingest paths refuse raw input longer than ``REALTIME_MAX_REQUEST_BYTES``).
"""

from __future__ import annotations

from realtime.routing.errors import RoutingError

_CONTAINERS = (dict, list)

#: Most levels of objects and lists in one event, the event object itself counting as one.
MAX_DEPTH = 32


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """Raise ``RoutingError("too_deep")`` when containers nest deeper than ``limit``.

    Iterative, so a hostile 1,024-level document cannot exhaust the Python stack; only
    containers are visited (a flat payload costs one pass over its values)."""
    if not isinstance(value, _CONTAINERS):
        return
    stack: list[tuple[dict[object, object] | list[object], int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if type(node) is dict or isinstance(node, dict) else node:
            if isinstance(child, _CONTAINERS):
                if depth >= limit:
                    raise RoutingError(
                        "too_deep", f"event nests objects/lists more than {limit} levels deep")
                stack.append((child, depth + 1))
