"""Cost of a bus message on an instance with no local recipient for it.

    python -m loadtest.bench_bus_skip [--messages 200000]

Feeds real channel messages (as the Redis Lua script publishes them) to RedisBus.on_raw
on an instance whose clients are all in other rooms, and prints µs per message. The same
run times a bare orjson decode of every whole message as a reference point: the floor of
any design that decodes every message (python-socketio's pub/sub manager does that and
more, ~100 µs per message on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from realtime.bus.base import body_parts
from realtime.bus.redis import RedisBus


def channel_messages(count: int) -> list[bytes]:
    messages = []
    for n in range(count):
        rooms = [f"user:u{n % 5000}"]
        head, tail = body_parts(f"e{n}", {"orderId": f"o{n}", "status": "SHIPPED",
                                          "updates": {"name": "x" * 40, "n": n}})
        position = f"abcd1234-{n + 1}".encode()
        header = orjson.dumps(["order_status_updated", rooms, f"e{n}", position.decode()])
        messages.append(header + b"\n" + head + position + tail)
    return messages


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    bus = RedisBus("redis://127.0.0.1:1/0")  # never connects: on_raw is pure CPU
    for n in range(10_000):
        bus.interest.add(f"user:elsewhere{n}")  # a busy instance, none of these rooms
    messages = channel_messages(args.messages)
    started = time.perf_counter()
    for raw in messages:
        await bus.on_raw(raw)
    ours = (time.perf_counter() - started) / len(messages) * 1e6
    started = time.perf_counter()
    for raw in messages:
        header, _, body = raw.partition(b"\n")
        orjson.loads(header), orjson.loads(body)
    full = (time.perf_counter() - started) / len(messages) * 1e6
    print(f"skip a message with no local recipient: {ours:.2f} µs/message "
          f"(reference, bare orjson decode of every whole message: {full:.2f} µs)")
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
