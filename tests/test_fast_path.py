"""The frame-once broadcast path changes nothing a client can observe.

Broadcasts, acks, snapshots and resume replays to one socket keep their order; long-polling
clients get the same events through engine.io's normal path; a WebSocket client that stops
reading is cut off at its buffer limit instead of growing the server's memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from support.clients import Recorder, connected
from support.raw import flood, flood_target, masked_text_frame, open_slow_reader, websocket_upgrade
from support.server import run_server, token

FAST_PUBLISH = {"publish_rate_per_second": 1e6, "publish_burst": 1_000_000}


def push(n: int, room: str) -> dict[str, Any]:
    return {"id": f"e{n}", "type": "PUSH", "event": "tick", "rooms": [room], "data": {"n": n}}


def first_arrivals(recorder: Recorder) -> list[dict[str, Any]]:
    """Ticks in arrival order, each eventId once (what a de-duplicating client keeps)."""
    seen: set[str] = set()
    kept = []
    for tick in recorder.named("tick"):
        if tick["eventId"] not in seen:
            seen.add(tick["eventId"])
            kept.append(tick)
    return kept


async def test_acks_snapshots_and_replays_keep_their_order_among_broadcasts() -> None:
    async with run_server(**FAST_PUBLISH) as srv, \
            connected(srv.url, token("alice", ["admin"])) as client:
        rooms = ["user:alice"] + [f"order:o{k}" for k in range(10)]
        total = 2000

        async def stream() -> None:
            for start in range(0, total, 50):
                await srv.publish([push(n, rooms[n % len(rooms)])
                                   for n in range(start, start + 50)])
                await asyncio.sleep(0.005)

        streaming = asyncio.create_task(stream())
        await client.wait_for("tick", count=1)
        replays = 0
        for k in range(10):
            answer = await client.call("subscribe_order_updates", f"o{k}")
            # The snapshot was emitted before the ack, so it is already here.
            snapshots = [s["orderId"] for s in client.named("order_status")]
            assert answer["ok"] and f"o{k}" in snapshots
            before = len(client.named("tick"))
            position = client.named("tick")[max(0, before - 20)]["position"]
            resumed = await client.call("resume", {"position": position})
            # Every replayed event arrived before the ack that reports it.
            arrived = len(client.named("tick")) - before
            assert resumed["recovered"] and arrived >= resumed["replayed"]
            replays += resumed["replayed"]
        await streaming
        async with asyncio.timeout(10):
            while len([t for t in first_arrivals(client) if t["n"] % len(rooms) == 0]) \
                    < len(range(0, total, len(rooms))):
                await asyncio.sleep(0.05)
        kept = [t for t in first_arrivals(client) if t["n"] % len(rooms) == 0]  # user room
        positions = [int(t["position"].rsplit("-", 1)[1]) for t in kept]
        assert positions == sorted(positions)  # order kept across acks, snapshots, replays
        assert {t["n"] for t in kept} == set(range(0, total, len(rooms)))  # none missing
        assert replays > 0


async def test_polling_and_websocket_clients_get_the_same_broadcasts() -> None:
    async with run_server(**FAST_PUBLISH) as srv, \
            connected(srv.url, token("p")) as websocket, \
            connected(srv.url, token("p"), transports=["polling"]) as polling:
        for start in range(0, 300, 100):
            await srv.publish([push(n, "user:p") for n in range(start, start + 100)])
        over_ws = await websocket.wait_for("tick", count=300)
        over_polling = await polling.wait_for("tick", count=300, timeout=15)
        assert [t["n"] for t in over_ws] == [t["n"] for t in over_polling] == list(range(300))


async def test_a_websocket_client_that_stops_reading_is_cut_off() -> None:
    server = await flood_target("REALTIME_WS_BUFFER_BYTES")
    assert server.proc is not None
    try:
        async with connected(server.url, token("s")) as healthy:
            slow = await open_slow_reader(
                server.url, websocket_upgrade("/socket.io/?EIO=4&transport=websocket"))
            slow.sendall(masked_text_frame('40' + orjson.dumps({'token': token('s')}).decode()))
            await asyncio.sleep(0.3)
            before = rss_kb(server.proc.pid)
            # 24 MB through a 1 MB buffer, as fast as the healthy client reads
            await flood(server.url, "user:s", received=lambda: len(healthy.named("tick")))
            ticks = await healthy.wait_for("tick", count=6000, timeout=30)
            assert [t["n"] for t in ticks] == list(range(6000))
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{server.url}/metrics") as response:
                metrics = await response.text()
            growth_mb = (rss_kb(server.proc.pid) - before) / 1024
            print(f"\nserver RSS growth {growth_mb:.1f} MB (24 MB pushed to a reader that "
                  "reads nothing)")
            assert 'realtime_slow_disconnects_total{transport="websocket"} 1.0' in metrics
            assert 'realtime_connections{transport="socketio"} 1.0' in metrics
            assert growth_mb < 30
            slow.close()
    finally:
        server.kill()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
