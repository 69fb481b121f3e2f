"""Sustained stream across two instances sharing Redis: Kafka → client latency at a rate.

    python -m loadtest.stream                          # 1,000 clients, 20 events/s, 20 s
    python -m loadtest.stream --clients 2000 --rate 10 --seconds 30 --servers realtime

Every event goes to ``role:bench``, which every client is in, so deliveries/s is
``--rate`` x ``--clients`` (default 20,000/s); clients alternate between the two instances.

* realtime: a Tansu broker, a private redis-server and two ``realtime serve`` instances in
  one consumer group; events are produced to Kafka (4 partitions) at ``--rate``.
* reference: two Node.js Socket.IO servers with ``@socket.io/redis-adapter`` on a private
  redis-server; it has no Kafka consumer, so the same events are POSTed at the same rate,
  alternating between the instances.

Latency is from the producer's timestamp (``ts`` in the event, taken just before it is
handed to Kafka or HTTP) to the client's receipt. Server CPU is both instances' CPU
seconds from /proc. Target (performance issue): realtime's p99 ≤ 50 ms at 20,000
deliveries/s. Output as ``loadtest.broadcast``: table, ``results/stream.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson

from loadtest.broadcast import BENCH_ENV, REFERENCE, connect, ensure_reference, publish
from loadtest.lean_client import LeanClient, client_session, no_gc_pauses
from loadtest.proc import cpu_seconds
from loadtest.report import Progress, Run, print_table, save, tally, wait_for
from support.kafka import KafkaBroker
from support.redis_server import RedisServer
from support.server import ServerProcess

Send = Callable[[dict[str, object]], Awaitable[None]]
Pair = contextlib.AbstractAsyncContextManager[tuple[list[ServerProcess], Send]]


@contextlib.asynccontextmanager
async def realtime_pair(redis: RedisServer, extra_env: dict[str, str]
                        ) -> AsyncIterator[tuple[list[ServerProcess], Send]]:
    """Two realtime instances consuming one topic; ``send`` produces an event to Kafka."""
    broker = KafkaBroker().start()
    topic = f"stream-{uuid.uuid4().hex[:6]}"
    servers: list[ServerProcess] = []
    try:
        await broker.create_topics([topic], partitions=4)
        env = {**BENCH_ENV, "REALTIME_REDIS_URL": redis.url,
               "REALTIME_KAFKA_BOOTSTRAP": broker.bootstrap, "REALTIME_KAFKA_TOPICS": topic,
               "REALTIME_KAFKA_GROUP_ID": f"g-{topic}",
               "REALTIME_KAFKA_ENABLE_IDEMPOTENCE": "false", **extra_env}
        servers = [await ServerProcess(env).start() for _ in range(2)]
        producer = broker.producer()
        await producer.start()
        keys = itertools.count()

        async def send(event: dict[str, object]) -> None:
            event["data"]["ts"] = time.time()  # type: ignore[index]
            await producer.send(topic, orjson.dumps(event), key=str(next(keys) % 16).encode())

        try:
            yield servers, send
        finally:
            await producer.stop()
    finally:
        for server in servers:
            server.kill()
        broker.kill()


@contextlib.asynccontextmanager
async def posting(servers: list[ServerProcess]) -> AsyncIterator[Send]:
    """``send`` POSTs an event to the servers in turn."""
    turn = itertools.cycle(servers)
    async with aiohttp.ClientSession() as session:
        async def send(event: dict[str, object]) -> None:
            event["data"]["ts"] = time.time()  # type: ignore[index]
            await publish(session, next(turn).url, [event])

        yield send


@contextlib.asynccontextmanager
async def http_pair(env: dict[str, str], argv: list[str] | None = None
                    ) -> AsyncIterator[tuple[list[ServerProcess], Send]]:
    """Two server processes (``argv``, default realtime) fed over HTTP in turn."""
    servers = [await ServerProcess(env, argv=argv).start() for _ in range(2)]
    try:
        async with posting(servers) as send:
            yield servers, send
    finally:
        for server in servers:
            server.kill()


def realtime_http_pair(redis: RedisServer, extra_env: dict[str, str]) -> Pair:
    """Two realtime instances on one Redis, fed over HTTP like the reference."""
    return http_pair({**BENCH_ENV, "REALTIME_REDIS_URL": redis.url, **extra_env})


def reference_pair(redis: RedisServer, extra_env: dict[str, str]) -> Pair:
    """Two Node reference instances on one Redis, fed over HTTP (it has no Kafka consumer)."""
    return http_pair({"REDIS_URL": redis.url}, ["node", str(REFERENCE / "server.mjs")])


PAIRS = {"realtime": realtime_pair, "realtime-http": realtime_http_pair,
         "reference": reference_pair}


async def warm_up(clients: list[LeanClient], send: Send, run_id: str) -> None:
    """Send until every client has an event: consumers joined, partitions assigned."""
    async with asyncio.timeout(90):
        for n in itertools.count():
            await send(bench_event(f"{run_id}-warm{n}"))
            await asyncio.sleep(0.5)
            if all(c.event_ids for c in clients):
                break
    await asyncio.sleep(1.0)
    for client in clients:
        client.event_ids.clear()
        client.latencies.clear()


def bench_event(event_id: str) -> dict[str, object]:
    return {"id": event_id, "type": "PUSH", "event": "bench", "rooms": ["role:bench"],
            "data": {}}


async def stream(clients: list[LeanClient], send: Send, args: argparse.Namespace,
                 run_id: str) -> list[str]:
    """Send ``--rate`` events/s for ``--seconds``; wait for every delivery (or the timeout)."""
    count = int(args.rate * args.seconds)
    print(f"    streaming {count:,} events at {args.rate:g}/s "
          f"({args.rate * len(clients):,.0f} deliveries/s) ...", flush=True)
    ids = [f"{run_id}-{n}" for n in range(count)]
    start, progress = time.monotonic(), Progress("sent", count, every=5.0)
    for n, event_id in enumerate(ids):
        await send(bench_event(event_id))
        delay = start + (n + 1) / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        progress.update(n + 1)
    await wait_for(lambda: sum(len(c.event_ids) for c in clients), count * len(clients),
                   args.timeout, "delivered", interval=0.01)
    return ids


async def measure(name: str, args: argparse.Namespace) -> Run:
    redis = RedisServer().start()
    try:
        pair = PAIRS[name](redis, dict(args.env))
        async with pair as (servers, send), client_session() as session:
            half = args.clients // 2
            clients = [
                *await connect(session, servers[0].url, [f"a{i}" for i in range(half)],
                               ["bench"]),
                *await connect(session, servers[1].url,
                               [f"b{i}" for i in range(args.clients - half)], ["bench"])]
            run_id = uuid.uuid4().hex[:8]
            print(f"    {len(clients):,} clients connected; warming up ...", flush=True)
            await warm_up(clients, send, run_id)
            pids = [s.proc.pid for s in servers if s.proc is not None]
            with no_gc_pauses():
                cpu0, t0 = sum(map(cpu_seconds, pids)), time.monotonic()
                ids = await stream(clients, send, args, run_id)
                cpu1, t1 = sum(map(cpu_seconds, pids)), time.monotonic()
            run = tally(Run(name, len(clients), seconds=t1 - t0, cpu_seconds=cpu1 - cpu0),
                        clients, [set(ids) for _ in clients])
            for client in clients:
                await client.stop()
            return run
    finally:
        redis.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", nargs="+", choices=list(PAIRS),
                        default=["realtime", "reference"])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--env", nargs="*", default=[], type=lambda kv: tuple(kv.split("=", 1)),
                        metavar="NAME=VALUE", help="extra environment for realtime instances")
    args = parser.parse_args()
    if "reference" in args.servers:
        ensure_reference(args.servers)
    runs = []
    for name in args.servers:
        print(f"[stream] {name} ...", flush=True)
        runs.append(await measure(name, args))
    print_table(f"stream: {args.rate:g} events/s x {args.clients:,} clients on 2 instances",
                runs, "realtime latency p99 ≤ 50 ms at 20,000 deliveries/s")
    save("stream", runs, settings=vars(args))


if __name__ == "__main__":
    asyncio.run(main())
