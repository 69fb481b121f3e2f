"""Kafka ingest benchmark: throughput with no clients and with 1,000 clients, and the
end-to-end Kafka → client latency at a steady rate.

    python -m loadtest.kafka_ingest [--events 20000] [--clients 1000] [--rate 2000]

Starts its own Tansu broker and a `realtime serve` subprocess on loopback; stops by itself.
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
from realtime.auth.tokens import mint_token
from support.kafka import KafkaBroker
from support.server import SECRET, ServerProcess


async def routed(url: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("realtime_events_routed_total{"))


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


async def ingest_rate(broker: KafkaBroker, count: int, clients: int) -> tuple[float, float]:
    """Pre-produce ``count`` events, start a server reading from the beginning, time it."""
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    await broker.create_topics([topic], partitions=4)
    await produce(broker, topic, count, max(1, clients))
    server = await bench_server(broker, topic, REALTIME_KAFKA_AUTO_OFFSET_RESET="earliest")
    try:
        # Clients connect before the consumer has joined (group join takes seconds).
        async with client_session() as session:
            lean = await connect_clients(session, server.url, clients)
            first = last = None
            async with asyncio.timeout(600):
                while True:
                    done = await routed(server.url)
                    now = time.monotonic()
                    if done > 0 and first is None:
                        first = (now, done)
                    if done >= count:
                        last = (now, done)
                        break
                    await asyncio.sleep(0.05)
            assert first is not None and last is not None
            rate = (last[1] - first[1]) / max(1e-9, last[0] - first[0])
            delivered = sum(len(c.event_ids) for c in lean)
            for client in lean:
                await client.stop()
            return rate, delivered
    finally:
        server.kill()


async def latency(broker: KafkaBroker, clients: int, rate: float,
                  seconds: float) -> dict[str, float]:
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
            await produce(broker, topic, count, clients, rate=rate)
            async with asyncio.timeout(60):
                while sum(len(c.latencies) for c in lean) < count:
                    await asyncio.sleep(0.1)
            values = [v for c in lean for v in c.latencies]
            for client in lean:
                await client.stop()
            return {"count": len(values), "p50_ms": percentile(values, 50) * 1000,
                    "p99_ms": percentile(values, 99) * 1000,
                    "max_ms": max(values) * 1000}
    finally:
        server.kill()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s for latency")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    broker = KafkaBroker().start()
    try:
        print(f"[1/3] ingest, no clients: {args.events} events ...", flush=True)
        bare, _ = await ingest_rate(broker, args.events, 0)
        print(f"      {bare:,.0f} events/s routed to the bus", flush=True)
        print(f"[2/3] ingest, {args.clients} clients (one user room each) ...", flush=True)
        loaded, delivered = await ingest_rate(broker, args.events, args.clients)
        print(f"      {loaded:,.0f} events/s routed, {delivered:,} delivered", flush=True)
        print(f"[3/3] latency at {args.rate:,.0f} events/s for {args.seconds:.0f}s, "
              f"{args.clients} clients ...", flush=True)
        lat = await latency(broker, args.clients, args.rate, args.seconds)
        print(f"      p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
              f"max {lat['max_ms']:.1f} ms over {lat['count']:,} deliveries", flush=True)
        print(orjson.dumps({"ingest_no_clients_eps": bare, "ingest_with_clients_eps": loaded,
                            "clients": args.clients, "latency": lat}).decode())
    finally:
        broker.kill()


if __name__ == "__main__":
    asyncio.run(main())
