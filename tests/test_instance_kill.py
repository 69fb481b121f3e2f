"""Instance kill: 2 instances behind Redis and one Kafka group, 200 clients, a steady
stream of 2,000 events; one instance is killed (-9) mid-stream, its clients reconnect to
the survivor with their last position. Every client must end with every event for its
rooms: none missing, none twice, each room in order."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from typing import Any

import orjson

from support.clients import Recorder
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, start_ready
from support.redis_server import RedisServer
from support.server import ServerProcess, publish_to, token

CLIENTS, EVENTS, RATE = 200, 2000, 150.0


def rooms_of(i: int) -> list[str]:
    rooms = [f"user:u{i % 40}"]
    if i % 5 == 0:
        rooms.append("role:ops")
    if i % 3 == 0:
        rooms.append(f"order:o{i % 8}")
    return rooms


def room_of_event(n: int) -> str:
    return [f"user:u{n % 40}", f"order:o{n % 8}", "role:ops"][n % 3]


def auth_of(i: int, position: str | None = None) -> dict[str, Any]:
    orders = [r.split(":")[1] for r in rooms_of(i) if r.startswith("order:")]
    roles = ["ops"] if "role:ops" in rooms_of(i) else []
    auth: dict[str, Any] = {"token": token(f"u{i % 40}", roles, orders=orders)}
    if orders:
        auth["orders"] = orders
    if position:
        auth["position"] = position
    return auth


async def connect(url: str, i: int, position: str | None = None) -> Recorder:
    recorder = Recorder()
    await recorder.client.connect(url, auth=auth_of(i, position), transports=["websocket"],
                                  wait_timeout=10)
    return recorder


async def test_kill_one_of_two_instances_loses_nothing(
        redis_server: RedisServer, kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker, partitions=2)
    env = {"REALTIME_REDIS_URL": redis_server.url, **names.env(kafka_broker)}
    a, b = ServerProcess(env), ServerProcess(env)
    recorders: dict[int, list[Recorder]] = {}
    try:
        await start_ready(a, b)
        for i in range(CLIENTS):
            recorders[i] = [await connect(a.url if i % 2 == 0 else b.url, i)]
        every_room = sorted({r for i in range(CLIENTS) for r in rooms_of(i)})
        status, _ = await publish_to(b.url, {"id": "hello", "type": "PUSH", "event": "tick",
                                             "rooms": every_room, "data": {"n": -1}})
        assert status == 202
        for i in range(CLIENTS):
            await recorders[i][0].wait_for("tick", timeout=15)

        producer = kafka_broker.producer()
        await producer.start()

        async def stream() -> None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            for n in range(EVENTS):
                room = room_of_event(n)
                event = {"id": f"k{n}", "type": "PUSH", "event": "tick", "rooms": [room],
                         "data": {"n": n}}
                await producer.send(names.publish, orjson.dumps(event), key=room.encode())
                delay = start + (n + 1) / RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.flush()

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(EVENTS / RATE / 3)
        a.kill()  # kill -9 mid-stream
        for i in range(0, CLIENTS, 2):  # A's clients move to B with their last position
            old = recorders[i][-1]
            await old.wait_disconnected(timeout=10)
            last = old.named("tick")[-1]["position"]
            recorders[i].append(await connect(b.url, i, position=last))
        await streaming
        await producer.stop()

        expected = {i: {"hello"} | {f"k{n}" for n in range(EVENTS)
                                    if room_of_event(n) in rooms_of(i)}
                    for i in range(CLIENTS)}

        def received(i: int) -> list[dict[str, Any]]:
            return [t for r in recorders[i] for t in r.named("tick")]

        async with asyncio.timeout(90):
            while any(not expected[i] <= {t["eventId"] for t in received(i)}
                      for i in range(CLIENTS)):
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # anything duplicated would arrive now

        missing = duplicates = out_of_order = 0
        for i in range(CLIENTS):
            ticks = received(i)
            ids = Counter(t["eventId"] for t in ticks)
            missing += len(expected[i] - set(ids))
            duplicates += sum(c - 1 for c in ids.values())
            per_room: dict[str, list[int]] = defaultdict(list)
            for t in ticks:
                if t["n"] >= 0:
                    per_room[room_of_event(t["n"])].append(t["n"])
            out_of_order += sum(1 for ns in per_room.values() if ns != sorted(ns))
        moved = sum(1 for i in range(CLIENTS) if len(recorders[i]) > 1)
        print(f"\ninstance kill: clients={CLIENTS} moved={moved} events={EVENTS} "
              f"missing={missing} duplicates={duplicates} rooms_out_of_order={out_of_order}")
        assert (missing, duplicates, out_of_order) == (0, 0, 0)
        recovered = [r.named("recovered") for i in range(0, CLIENTS, 2)
                     for r in recorders[i][1:]]
        assert all([answer["recovered"] for answer in x] == [True] for x in recovered)
    finally:
        for recs in recorders.values():
            for recorder in recs:
                await recorder.client.disconnect()
        a.kill()
        b.kill()
