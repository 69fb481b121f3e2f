"""Bounded nesting: an accepted event must be encodable by every encoder on its way out.

``orjson.loads`` accepts 1,024 levels of nesting but ``orjson.dumps`` refuses more than 254,
and client libraries have limits of their own; :data:`MAX_DEPTH` leaves ample room for the
few levels the transports add around a payload. Size is bounded before decoding (the
ingest paths refuse raw input longer than ``REALTIME_MAX_REQUEST_BYTES``).

Walking every decoded event costs as much as routing it, so the ingest paths first ask
:func:`text_within` about the raw JSON text of a whole request or fetch (a few passes of
``bytes`` methods, in C): when it vouches for the text, no event of it needs the walk.
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


#: Everything but quotes, backslashes and brackets: what :func:`text_within` deletes.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"\\[]{}')


def text_within(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """``True`` only if the valid JSON text ``raw`` nests at most ``limit`` levels (``False``
    also when it cannot tell cheaply: then each decoded value gets :func:`check_depth`).

    Only quotes, backslashes and brackets are kept. A string whose text keeps none of them
    is left as ``""`` and removed; any other string leaves a quote behind (its opening
    quote is followed by a kept character, never by the quote that ends it), and such a
    text is not vouched for. What remains is the brackets of the structure. A pass removes
    every adjacent ``[]``, then every adjacent ``{}``: each of the two that removed
    something took at most one level off, so when nothing is left the levels counted that
    way bound the nesting."""
    rest = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in rest:
        return False
    levels = 0
    while rest and levels <= limit:
        lists = rest.replace(b"[]", b"")
        objects = lists.replace(b"{}", b"")
        levels += (len(lists) < len(rest)) + (len(objects) < len(lists))
        rest = objects
    return not rest and levels <= limit
