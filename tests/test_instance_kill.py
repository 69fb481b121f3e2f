"""Instance kill: 2 instances behind Redis and one Kafka group, 200 clients, a steady
stream of 2,000 events; one instance is killed (-9) mid-stream, its clients reconnect to
the survivor. Every client must end with every event for its rooms: none missing, none
twice, each room in order.

Two kinds of clients: python-socketio ones resuming with their last position
(``auth.position``, as SDKs without recovery support do), and official JavaScript
clients (``tests/js/many.mjs``) with nothing but the built-in connection-state recovery,
reconnecting through a load balancer that now sends them to the survivor."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from typing import Any

import orjson

from support.clients import Recorder
from support.forwarder import forwarding
from support.js_client import JsClient
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


def orders_of(i: int) -> list[str]:
    return [r.split(":")[1] for r in rooms_of(i) if r.startswith("order:")]


def token_of(i: int) -> str:
    roles = ["ops"] if "role:ops" in rooms_of(i) else []
    return token(f"u{i % 40}", roles, orders=orders_of(i))


def auth_of(i: int, position: str | None = None) -> dict[str, Any]:
    orders = orders_of(i)
    auth: dict[str, Any] = {"token": token_of(i)}
    if orders:
        auth["orders"] = orders
    if position:
        auth["position"] = position
    return auth


async def stream(broker: KafkaBroker, topic: str) -> None:
    """``EVENTS`` tick events at ``RATE`` per second into Kafka, keyed by room."""
    producer = broker.producer()
    await producer.start()
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(EVENTS):
            room = room_of_event(n)
            event = {"id": f"k{n}", "type": "PUSH", "event": "tick", "rooms": [room],
                     "data": {"n": n}}
            await producer.send(topic, orjson.dumps(event), key=room.encode())
            delay = start + (n + 1) / RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await producer.flush()
    finally:
        await producer.stop()


def expected(i: int, *extra: str) -> set[str]:
    """The event ids client ``i`` must receive: the stream's for its rooms, and ``extra``."""
    return {*extra, *(f"k{n}" for n in range(EVENTS) if room_of_event(n) in rooms_of(i))}


def tally(received: dict[int, list[tuple[str, int]]], moved: int,
          *extra: str) -> tuple[int, int, int]:
    """(missing, duplicates, rooms out of order) over every client's (eventId, n) list."""
    missing = duplicates = out_of_order = 0
    for i, ticks in received.items():
        ids = Counter(event_id for event_id, _ in ticks)
        missing += len(expected(i, *extra) - set(ids))
        duplicates += sum(c - 1 for c in ids.values())
        per_room: dict[str, list[int]] = defaultdict(list)
        for _, n in ticks:
            if n >= 0:
                per_room[room_of_event(n)].append(n)
        out_of_order += sum(1 for ns in per_room.values() if ns != sorted(ns))
    print(f"\ninstance kill: clients={len(received)} moved={moved} events={EVENTS} "
          f"missing={missing} duplicates={duplicates} rooms_out_of_order={out_of_order}")
    return missing, duplicates, out_of_order


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

        streaming = asyncio.create_task(stream(kafka_broker, names.publish))
        await asyncio.sleep(EVENTS / RATE / 3)
        a.kill()  # kill -9 mid-stream
        for i in range(0, CLIENTS, 2):  # A's clients move to B with their last position
            old = recorders[i][-1]
            await old.wait_disconnected(timeout=10)
            last = old.named("tick")[-1]["position"]
            recorders[i].append(await connect(b.url, i, position=last))
        await streaming

        def received(i: int) -> list[tuple[str, int]]:
            return [(t["eventId"], t["n"]) for r in recorders[i] for t in r.named("tick")]

        async with asyncio.timeout(90):
            while any(not expected(i, "hello") <= {t for t, _ in received(i)}
                      for i in range(CLIENTS)):
                await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # anything duplicated would arrive now

        moved = sum(1 for i in range(CLIENTS) if len(recorders[i]) > 1)
        assert tally({i: received(i) for i in range(CLIENTS)}, moved, "hello") == (0, 0, 0)
        recovered = [r.named("recovered") for i in range(0, CLIENTS, 2)
                     for r in recorders[i][1:]]
        assert all([x["recovered"] for x in rec] == [True] for rec in recovered), recovered
    finally:
        for recs in recorders.values():
            for recorder in recs:
                await recorder.client.disconnect()
        a.kill()
        b.kill()


async def test_kill_one_of_two_instances_official_clients_recover_by_themselves(
        redis_server: RedisServer, kafka_broker: KafkaBroker) -> None:
    """Official JS clients, half behind a balancer to A and half to B; A is killed (-9)
    mid-stream and its balancer now sends to B. A's clients reconnect on their own with
    pid + offset only (their order rooms were joined by ``subscribe_order_updates``, not
    in ``auth``): ``socket.recovered``, same sid, nothing lost or twice, rooms in order."""
    names = KafkaNames()
    await names.create(kafka_broker, partitions=2)
    env = {"REALTIME_REDIS_URL": redis_server.url, **names.env(kafka_broker)}
    a, b = ServerProcess(env), ServerProcess(env)
    clients: JsClient | None = None
    try:
        await start_ready(a, b)
        async with forwarding(a.port) as to_a, forwarding(b.port) as to_b:
            specs = [{"url": (to_a if i % 2 == 0 else to_b).url, "auth": {"token": token_of(i)},
                      "orders": orders_of(i)} for i in range(CLIENTS)]
            clients = await JsClient(to_a.url, {"clients": specs, "reconnectionDelay": 500},
                                     script="many.mjs").start()
            for _ in range(CLIENTS):
                ready = await clients.until("ready", limit=30)
                assert all(ack.get("ok") for ack in ready["acks"]), ready

            streaming = asyncio.create_task(stream(kafka_broker, names.publish))
            await asyncio.sleep(EVENTS / RATE / 3)
            to_a.target_port = b.port  # the balancer now sends new connections to B
            a.kill()  # kill -9 mid-stream: no disconnect hook runs on A
            await streaming

            total = sum(len(expected(i)) for i in range(CLIENTS))
            with contextlib.suppress(TimeoutError):  # the report below says what is missing
                async with asyncio.timeout(30):
                    while True:
                        await clients.send({"cmd": "count"})
                        if (await clients.until("count"))["received"].get("tick", 0) >= total:
                            break
                        await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)  # anything duplicated would arrive now
            await clients.send({"cmd": "report"})
            await clients.until("report")

        reports = {line["client"]: line for line in clients.of("client")}
        received = {i: [(e[1], e[2]) for e in reports[i]["events"] if e[0] == "tick"]
                    for i in range(CLIENTS)}
        moved = [i for i in range(CLIENTS) if len(reports[i]["connects"]) > 1]
        not_recovered = [(i, reports[i]["connects"]) for i in moved
                         if reports[i]["connects"][1:] != [
                             {"id": reports[i]["connects"][0]["id"], "recovered": True}]]
        print(f"official clients: reconnected={len(moved)} not recovered={len(not_recovered)}")
        assert tally(received, len(moved)) == (0, 0, 0)
        assert moved == list(range(0, CLIENTS, 2)), moved  # A's clients, and only them
        assert not not_recovered, not_recovered[:3]
        # Besides ticks, only each subscription's snapshot (first connect only).
        others = {i: [e[0] for e in reports[i]["events"] if e[0] != "tick"]
                  for i in range(CLIENTS)}
        assert all(others[i] == ["order_status"] * len(orders_of(i)) for i in range(CLIENTS))
    finally:
        if clients is not None:
            await clients.kill()
        a.kill()
        b.kill()
