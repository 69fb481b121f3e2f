"""Kafka ingest benchmark: throughput with no clients and with 1,000 clients, and the
end-to-end Kafka → client latency at a steady rate.

    python -m loadtest.kafka_ingest [--events 20000] [--clients 1000] [--rate 2000]

Starts its own Tansu broker and a `realtime serve` subprocess on loopback; stops by itself.
Rates are taken over the whole consumption (see ``RoutedWatch``). Output: a table,
``results/kafka_ingest.json`` and ``.png`` (the latency distribution of the third phase).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loadtest.lean_client import LeanClient, client_session, percentile
from loadtest.report import Run, print_table, save, tally, wait_for
from realtime.auth.tokens import mint_token
from support.kafka import KafkaBroker
from support.server import SECRET, ServerProcess

POLL_SECONDS = 0.01


class RoutedWatch:
    """Polls ``realtime_events_routed_total`` on one connection, from server start on.

    A rate is ``count`` over the whole consumption: from the last poll that still saw
    nothing routed to the first that saw all of it (both ends conservative, so short runs
    read low, never zero).
    """

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url
        self.routed = 0.0
        self.idle_until = time.monotonic()  # last moment nothing was routed yet
        self.task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            async with self.session.get(f"{self.url}/metrics") as response:
                text = await response.text()
            self.routed = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                              if line.startswith("realtime_events_routed_total{"))
            if not self.routed:
                self.idle_until = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    async def until(self, count: int, timeout: float) -> float:
        """Seconds from the start of consumption until ``count`` events were routed."""
        def seen() -> int:
            if self.task.done():
                self.task.result()  # the poller failed: say why instead of waiting
            return int(self.routed)

        await wait_for(seen, count, timeout, "routed", interval=POLL_SECONDS)
        finished = time.monotonic()
        self.task.cancel()
        if self.routed < count:
            raise RuntimeError(f"only {self.routed:.0f} of {count} events routed")
        return finished - self.idle_until


async def produce(broker: KafkaBroker, topic: str, count: int, users: int,
                  rate: float | None = None) -> None:
    producer = broker.producer()
    await producer.start()
    try:
        start = time.monotonic()
        for n in range(count):
            event = {"id": f"{topic}-{n}", "type": "PUSH", "event": "bench",
                     "rooms": [f"user:u{n % users}"], "data": {"n": n, "ts": time.time()}}
            await producer.send(topic, orjson.dumps(event), key=str(n % 16).encode())
            if rate:
                delay = start + (n + 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()


async def bench_server(broker: KafkaBroker, topic: str, **env: str) -> ServerProcess:
    return await ServerProcess({
        "REALTIME_KAFKA_BOOTSTRAP": broker.bootstrap, "REALTIME_KAFKA_TOPICS": topic,
        "REALTIME_KAFKA_GROUP_ID": f"g-{topic}", "REALTIME_KAFKA_ENABLE_IDEMPOTENCE": "false",
        "REALTIME_LOG_LEVEL": "WARNING", **env}).start()


async def connect_clients(session: aiohttp.ClientSession, url: str,
                          count: int) -> list[LeanClient]:
    """``count`` lean clients, client i as user ``u{i}`` (room ``user:u{i}``)."""
    clients = [LeanClient(url, mint_token(SECRET, f"u{i}")) for i in range(count)]
    for client in clients:
        await client.start(session)
    return clients


async def ingest_rate(broker: KafkaBroker, count: int, clients: int) -> Run:
    """Pre-produce ``count`` events, start a server reading from the beginning, time it."""
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    await broker.create_topics([topic], partitions=4)
    await produce(broker, topic, count, max(1, clients))
    server = await bench_server(broker, topic, REALTIME_KAFKA_AUTO_OFFSET_RESET="earliest")
    try:
        async with client_session() as session:
            watch = RoutedWatch(session, server.url)
            # Clients connect before the consumer has joined (group join takes seconds).
            lean = await connect_clients(session, server.url, clients)
            seconds = await watch.until(count, timeout=600)
            run = Run(f"{clients:,} clients" if clients else "no clients", clients,
                      seconds=seconds, extra={"events": count, "events routed/s": count / seconds})
            if lean:  # one user room each: every event reaches one client
                await wait_for(lambda: sum(len(c.event_ids) for c in lean), count, 30,
                               "delivered")
                ids = [i for c in lean for i in c.event_ids]
                run.delivered, run.duplicates = len(ids), len(ids) - len(set(ids))
                run.missing = count - len(set(ids))
                run.connect_p50_ms = percentile([c.connect_seconds for c in lean], 50) * 1000
            for client in lean:
                await client.stop()
            return run
    finally:
        server.kill()


async def latency(broker: KafkaBroker, clients: int, rate: float, seconds: float) -> Run:
    topic = f"lat-{uuid.uuid4().hex[:6]}"
    await broker.create_topics([topic], partitions=4)
    server = await bench_server(broker, topic)
    try:
        async with client_session() as session:
            lean = await connect_clients(session, server.url, clients)
            async with asyncio.timeout(60):
                while True:
                    async with session.get(f"{server.url}/readyz") as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.2)
            count = int(rate * seconds)
            started = time.monotonic()
            await produce(broker, topic, count, clients, rate=rate)
            await wait_for(lambda: sum(len(c.latencies) for c in lean), count, 60, "delivered")
            run = tally(Run(f"{rate:g} events/s", clients, seconds=time.monotonic() - started),
                        lean, [set() for _ in lean])
            run.extra["events"] = count
            for client in lean:
                await client.stop()
            return run
    finally:
        server.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    broker = KafkaBroker().start()
    try:
        print(f"[1/3] ingest, no clients: {args.events:,} events ...", flush=True)
        runs = [await ingest_rate(broker, args.events, 0)]
        print(f"[2/3] ingest, {args.clients:,} clients (one user room each) ...", flush=True)
        runs.append(await ingest_rate(broker, args.events, args.clients))
        print(f"[3/3] latency at {args.rate:,.0f} events/s for {args.seconds:g} s, "
              f"{args.clients:,} clients ...", flush=True)
        runs.append(await latency(broker, args.clients, args.rate, args.seconds))
    finally:
        broker.kill()
    print_table("Kafka ingest (4 partitions): routing rate over the whole consumption; "
                "Kafka → client latency", runs)
    save("kafka_ingest", runs, settings=vars(args))


if __name__ == "__main__":
    asyncio.run(main())
