"""Cost of a bus message on an instance with no local recipient for it.

    python -m loadtest.bench_bus_skip [--messages 200000]

Feeds real channel messages (as the Redis Lua script publishes them) to RedisBus.on_raw
on an instance whose clients are all in other rooms, and reports µs per message. The same
run times a bare orjson decode of every whole message as a reference point: the floor of
any design that decodes every message (python-socketio's pub/sub manager does that and
more, ~100 µs per message on this machine). Output: a table and
``results/bench_bus_skip.json`` (one figure per run, no distribution, so no PNG).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson

from loadtest.lean_client import no_gc_pauses
from loadtest.report import Progress, Run, print_table, save
from realtime.bus.base import delivered
from realtime.bus.redis import RedisBus, channel_message, frame_of

CHUNK = 10_000


def channel_messages(count: int) -> list[bytes]:
    """One delivery per channel message, as the publish script sends them."""
    messages = []
    for n in range(count):
        body = orjson.dumps(delivered(f"e{n}", "", {"orderId": f"o{n}", "status": "SHIPPED",
                                                    "updates": {"name": "x" * 40, "n": n}}))
        frame = frame_of("order_status_updated", (f"user:u{n % 5000}",), f"e{n}", body)
        messages.append(channel_message("abcd1234", n, [frame]))
    return messages


async def timed(messages: list[bytes], handle: Callable[[bytes], Awaitable[object]],
                label: str) -> float:
    """µs per message for ``handle`` over all of ``messages`` (timed in chunks, so
    progress can be shown between them without being measured)."""
    progress, elapsed = Progress(label, len(messages)), 0.0
    for start in range(0, len(messages), CHUNK):
        chunk = messages[start:start + CHUNK]
        began = time.perf_counter()
        for raw in chunk:
            await handle(raw)
        elapsed += time.perf_counter() - began
        progress.update(start + len(chunk))
    return elapsed / len(messages) * 1e6


async def bare_decode(raw: bytes) -> None:
    _, header, body = raw.split(b"\n")
    orjson.loads(header), orjson.loads(body)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    bus = RedisBus("redis://127.0.0.1:1/0")  # never connects: on_raw is pure CPU
    for n in range(10_000):
        bus.interest.add(f"user:elsewhere{n}")  # a busy instance, none of these rooms
    messages = channel_messages(args.messages)
    with no_gc_pauses():
        ours = await timed(messages, bus.on_raw, "skipped")
        full = await timed(messages, bare_decode, "decoded")
    await bus.close()
    runs = [Run("realtime skip", 0, extra={"messages": len(messages), "µs per message": ours}),
            Run("bare decode", 0, extra={"messages": len(messages), "µs per message": full})]
    print_table("bus message with no local recipient (Redis bus)", runs, "≤ 10 µs per message")
    save("bench_bus_skip", runs, settings=vars(args))


if __name__ == "__main__":
    asyncio.run(main())
