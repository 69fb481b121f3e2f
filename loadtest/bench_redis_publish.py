"""Redis-server CPU per published event: the bus's publish script on its own.

    python -m loadtest.bench_redis_publish [--events 50000] [--per-call 100] [--rooms 5000]

Publishes ``--events`` events (one recipient room each, spread over ``--rooms`` user
rooms) through ``RedisBus.publish_many``, ``--per-call`` per script call, with one
subscribed instance listening, against a private redis-server, ``--repeat`` times; reports
the redis-server's CPU per event (``/proc``, every thread) of each repeat and the best.
The ``rooms --redis`` scenario of ``loadtest.broadcast`` measures the same with 5,000
clients, a realtime server and its listener on the same machine, so it is noisier.
Output: a table and ``results/bench_redis_publish.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loadtest.proc import cpu_seconds
from loadtest.report import Run, print_table, save
from realtime.bus.base import Batch, Message
from realtime.bus.redis import RedisBus
from realtime.routing import Delivery
from support.redis_server import RedisServer


async def once(args: argparse.Namespace) -> float:
    """Redis-server CPU µs per event of one run, on a fresh redis-server."""
    redis = RedisServer().start()
    assert redis.proc is not None
    bus = RedisBus(redis.url)
    received = 0

    async def count(messages: list[Message]) -> None:
        nonlocal received
        received += len(messages)

    try:
        bus.subscribe(count)
        for n in range(args.rooms):
            bus.interest.add(f"user:u{n}")
        await bus.start()
        run = uuid.uuid4().hex[:6]

        def batch(start: int) -> list[Batch]:
            return [(f"{run}-{n}", [Delivery("bench", (f"user:u{n % args.rooms}",),
                                             {"n": n, "ts": time.time()})])
                    for n in range(start, start + args.per_call)]

        await bus.publish_many(batch(-args.per_call))  # the script is loaded
        cpu0 = cpu_seconds(redis.proc.pid)
        for start in range(0, args.events, args.per_call):
            await bus.publish_many(batch(start))
        cpu = cpu_seconds(redis.proc.pid) - cpu0
        async with asyncio.timeout(30):
            while received < args.events + args.per_call:
                await asyncio.sleep(0.01)
        return cpu / args.events * 1e6
    finally:
        await bus.close()
        redis.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--per-call", type=int, default=100)
    parser.add_argument("--rooms", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    figures = [await once(args) for _ in range(args.repeat)]
    run = Run("redis publish", 0, extra={
        "Redis-server CPU µs per event (best)": min(figures),
        **{f"run {n + 1}": value for n, value in enumerate(figures)}})
    print_table(f"Redis-server CPU per event, {args.per_call} per call, {args.rooms:,} rooms",
                [run], "≤ 10 µs")
    save("bench_redis_publish", [run], settings=vars(args))


if __name__ == "__main__":
    asyncio.run(main())
