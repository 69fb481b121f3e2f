"""Mass disconnect: N WebSocket clients (each in its own user room) vanish at once.

    python -m loadtest.mass_disconnect [--clients 10000]

Reports the server's CPU seconds spent until every connection is gone, and the longest
event-loop stall seen meanwhile (as the worst /healthz response time, probed every 10 ms).
Target (issue "Scale-out through Redis"): < 5 s CPU, no stall > 200 ms for 10,000 sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loadtest.lean_client import LeanClient, client_session, no_gc_pauses
from loadtest.proc import cpu_seconds, rss_bytes
from realtime.auth.tokens import mint_token
from support.server import SECRET, ServerProcess


async def connections(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith('realtime_connections{transport="socketio"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                worst: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        async with session.get(f"{url}/healthz") as response:
            await response.read()
        took = time.monotonic() - started
        if took > worst[0]:
            worst[:] = [took, time.time() - took]
        await asyncio.sleep(0.01)


async def disconnect_all(clients: list[LeanClient], url: str, pid: int) -> str:
    """Drop every client at once; the server's CPU, the wall time, the worst /healthz."""
    with no_gc_pauses():  # the probe runs in this process: keep its own GC out of it
        async with aiohttp.ClientSession() as session:
            stop, worst = asyncio.Event(), [0.0, 0.0]
            prober = asyncio.create_task(probe(session, url, stop, worst))
            await asyncio.sleep(0.3)
            worst[:] = [0.0, 0.0]
            cpu0, t0, began = cpu_seconds(pid), time.monotonic(), time.time()
            for client in clients:
                client.abort()
            while await connections(session, url) > 0:
                await asyncio.sleep(0.02)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            stop.set()
            await prober
    return (f"mass disconnect: {cpu1 - cpu0:.2f} s server CPU, {t1 - t0:.2f} s wall, "
            f"worst /healthz during it {worst[0] * 1000:.0f} ms "
            f"(sent {(worst[1] - began) * 1000:+.0f} ms after the disconnect began)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=10000)
    args = parser.parse_args()
    server = await ServerProcess({"REALTIME_LOG_LEVEL": "WARNING"}).start()
    assert server.proc is not None
    pid = server.proc.pid
    clients: list[LeanClient] = []
    try:
        async with client_session() as session:
            rss0 = rss_bytes(pid)
            print(f"connecting {args.clients} clients ...", flush=True)
            for batch in range(0, args.clients, 500):
                group = [LeanClient(server.url, mint_token(SECRET, f"u{i}", roles=["user"]))
                         for i in range(batch, min(args.clients, batch + 500))]
                await asyncio.gather(*(c.start(session) for c in group))
                clients += group
                print(f"  {len(clients)} connected", flush=True)
            assert await connections(session, server.url) == args.clients
            rss1 = rss_bytes(pid)
            report = await disconnect_all(clients, server.url, pid)
            for client in clients:
                await client.stop()
        print(f"clients: {args.clients}  RSS per idle connection: "
              f"{(rss1 - rss0) / args.clients / 1024:.1f} KB")
        print(report)
    finally:
        server.kill()


if __name__ == "__main__":
    asyncio.run(main())
