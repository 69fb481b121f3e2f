"""Mass disconnect: N WebSocket clients (each in its own user room) vanish at once.

    python -m loadtest.mass_disconnect [--clients 10000]

Reports the server's CPU seconds spent until every connection is gone, and the event-loop
stalls seen meanwhile (the /healthz response times, probed every 10 ms). Target (issue
"Scale-out through Redis"): < 5 s CPU, no stall > 200 ms for 10,000 sockets. Output: a
table, ``results/mass_disconnect.json`` and ``.png`` (the /healthz response times).
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
from loadtest.report import Progress, Run, print_table, save, spread
from realtime.auth.tokens import mint_token
from support.server import SECRET, ServerProcess


async def connections(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        for line in (await response.text()).splitlines():
            if line.startswith('realtime_connections{transport="socketio"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event,
                times: list[float]) -> None:
    """Time a ``/healthz`` request every 10 ms: each answer waits for the event loop."""
    while not stop.is_set():
        started = time.monotonic()
        async with session.get(f"{url}/healthz") as response:
            await response.read()
        times.append(time.monotonic() - started)
        await asyncio.sleep(0.01)


async def disconnect_all(clients: list[LeanClient], url: str, pid: int, run: Run) -> None:
    """Drop every client at once; the server's CPU and the wall time until all are gone,
    and every /healthz response time meanwhile (``run.latencies``)."""
    with no_gc_pauses():  # the probe runs in this process: keep its own GC out of it
        async with aiohttp.ClientSession() as session:
            stop, times = asyncio.Event(), []
            prober = asyncio.create_task(probe(session, url, stop, times))
            await asyncio.sleep(0.3)
            times.clear()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            for client in clients:
                client.abort()
            progress = Progress("still connected", len(clients))
            while (left := await connections(session, url)) > 0:
                progress.update(int(left))
                await asyncio.sleep(0.02)
            run.cpu_seconds, run.seconds = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            stop.set()
            await prober
    run.latencies = times
    run.extra.update({f"/healthz {k} ms": v for k, v in spread(times).items()})


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10000)
    args = parser.parse_args()
    server = await ServerProcess({"REALTIME_LOG_LEVEL": "WARNING"}).start()
    assert server.proc is not None
    pid = server.proc.pid
    clients: list[LeanClient] = []
    try:
        async with client_session() as session:
            rss0 = rss_bytes(pid)
            print(f"connecting {args.clients:,} clients ...", flush=True)
            progress = Progress("connected", args.clients)
            for batch in range(0, args.clients, 500):
                group = [LeanClient(server.url, mint_token(SECRET, f"u{i}", roles=["user"]))
                         for i in range(batch, min(args.clients, batch + 500))]
                await asyncio.gather(*(c.start(session) for c in group))
                clients += group
                progress.update(len(clients))
            assert await connections(session, server.url) == args.clients
            run = Run("realtime", args.clients, extra={
                "RSS KB per idle connection": (rss_bytes(pid) - rss0) / args.clients / 1024})
            print(f"disconnecting all {args.clients:,} at once ...", flush=True)
            await disconnect_all(clients, server.url, pid, run)
            for client in clients:
                await client.stop()
        print_table(f"mass disconnect of {args.clients:,} sockets "
                    "(seconds: until the server counts none)", [run],
                    "< 5 s server CPU, no /healthz answer slower than 200 ms")
        save("mass_disconnect", [run], axis="/healthz response time during the disconnect "
             "(ms, log scale)", settings=vars(args))
    finally:
        server.kill()


if __name__ == "__main__":
    asyncio.run(main())
