"""Fan-out benchmarks: realtime against the Node.js Socket.IO reference, in the same run.

    python -m loadtest.broadcast                       # every scenario, both servers
    python -m loadtest.broadcast --scenario burst steady --clients 1000
    python -m loadtest.broadcast --scenario rooms --servers realtime reference uws --redis

Scenarios (each server in turn, pinned to CPU 0 with ``taskset``; the load client on CPU 1):
  burst   one room of N WebSocket clients, a burst of 100 events in one publish request
  steady  the same room, one event per publish request at ``--steady-rate`` events/s
  rooms   N clients each in its own user room, events spread over the rooms
  idle    ``--idle-clients`` idle connections: RSS growth per connection
Server CPU is read from /proc for the server process only, from the moment every client is
connected until the last delivery. Output: a table, ``loadtest/results/<scenario>.json`` and
``.png`` (latency distribution). ``--sse M`` adds M SSE clients to realtime's runs.

Servers: ``realtime``, and the Node.js Socket.IO references (``loadtest/reference/``) on three
engines: ``reference`` (Node's http + ``ws``), ``eiows`` (when built, see
``loadtest/reference/build-eiows.sh``) and ``uws`` (uWebSockets.js, ``io.attachApp``).
``--redis`` runs every server on a private redis-server (realtime's Redis bus, the
references' ``@socket.io/redis-adapter``) and adds the redis-server's CPU per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from loadtest.lean_client import LeanClient, LeanSSEClient, client_session, no_gc_pauses
from loadtest.proc import cpu_seconds, kernel_seconds, rss_bytes
from loadtest.report import (
    Progress,
    Run,
    full_gc,
    print_rounds,
    print_table,
    ratios_to_references,
    save,
    tally,
    wait_for,
)
from realtime.auth.tokens import mint_token
from support.redis_server import RedisServer
from support.server import SECRET, ServerProcess, service_token

REFERENCE = Path(__file__).resolve().parent / "reference"
SERVER_CPU, LOAD_CPU = "0", 1
BENCH_ENV = {"REALTIME_LOG_LEVEL": "WARNING", "REALTIME_PUBLISH_RATE_PER_SECOND": "1000000",
             "REALTIME_PUBLISH_BURST": "1000000"}
Event = dict[str, object]


#: Reference server names → the ``ENGINE`` of ``loadtest/reference/server.mjs``.
ENGINES = {"reference": "ws", "eiows": "eiows", "uws": "uws"}
SERVERS = ["realtime", *ENGINES]


def start_server(name: str, env: dict[str, str] | None = None,
                 redis_url: str | None = None) -> ServerProcess:
    if name == "realtime":
        redis = {"REALTIME_REDIS_URL": redis_url} if redis_url else {}
        return ServerProcess({**BENCH_ENV, **redis, **(env or {})}, cpus=SERVER_CPU)
    redis = {"REDIS_URL": redis_url} if redis_url else {}
    return ServerProcess({"ENGINE": ENGINES[name], **redis, **(env or {})},
                         argv=["node", str(REFERENCE / "server.mjs")], cpus=SERVER_CPU)


def ensure_reference(servers: list[str]) -> None:
    """Install the reference's packages (no install scripts: uWebSockets.js ships binaries)."""
    if not (REFERENCE / "node_modules" / "uwebsockets").exists():
        print("installing the reference server's node packages (npm ci) ...", flush=True)
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                        "--loglevel=error"], cwd=REFERENCE, check=True)
    if "eiows" in servers and not (REFERENCE / "node_modules" / "eiows").exists():
        print("building eiows (loadtest/reference/build-eiows.sh) ...", flush=True)
        subprocess.run(["sh", str(REFERENCE / "build-eiows.sh")], cwd=REFERENCE, check=True)


async def connect(session: aiohttp.ClientSession, url: str, subs: list[str], roles: list[str],
                  sse: int = 0) -> list[LeanClient]:
    """One WebSocket client per ``subs`` entry (the last ``sse`` of them over SSE)."""
    clients: list[LeanClient] = [
        (LeanSSEClient if i >= len(subs) - sse else LeanClient)(
            url, mint_token(SECRET, sub, roles=roles, ttl=24 * 3600))
        for i, sub in enumerate(subs)]
    progress = Progress("connected", len(clients))
    for start in range(0, len(clients), 250):
        await asyncio.gather(*(c.start(session) for c in clients[start:start + 250]))
        progress.update(min(len(clients), start + 250))
    return clients


@functools.cache
def backend_token() -> str:
    """One service token for the whole run, as a backend keeps its token until it expires
    (a fresh token per request, each with its own ``jti``, made every request pay a full
    JWT verification: a cost of this load client, not of a backend)."""
    return service_token()


async def publish(session: aiohttp.ClientSession, url: str, events: list[Event]) -> None:
    async with session.post(f"{url}/api/v1/publish", data=orjson.dumps(events),
                            headers={"Authorization": f"Bearer {backend_token()}"}) as response:
        if response.status >= 300:
            raise RuntimeError(f"publish failed: {response.status} {await response.text()}")


def event(run_id: str, n: int, room: str) -> Event:
    return {"id": f"{run_id}-{n}", "type": "PUSH", "event": "bench", "rooms": [room],
            "data": {"n": n, "ts": time.time()}}


def expected_ids(events: list[Event], clients: int,
                 rooms_per_client: Callable[[int], str]) -> list[set[str]]:
    """Per client, the event ids it must receive (``role:bench`` reaches everyone)."""
    expected: list[set[str]] = [set() for _ in range(clients)]
    index = {rooms_per_client(i): i for i in range(clients)}
    for e in events:
        for room in e["rooms"]:  # type: ignore[attr-defined]
            for i in range(clients) if room == "role:bench" else [index[room]]:
                expected[i].add(str(e["id"]))
    return expected


async def measure(name: str, args: argparse.Namespace, rooms_per_client: Callable[[int], str],
                  send: Callable[[aiohttp.ClientSession, str, str], Awaitable[list[Event]]],
                  sse: int = 0) -> Run:
    """Start ``name``, connect clients, run ``send``, wait for every delivery; measure."""
    redis = RedisServer().start() if args.redis else None
    server = await start_server(name, redis_url=redis.url if redis else None).start()
    assert server.proc is not None
    pid, run_id = server.proc.pid, uuid.uuid4().hex[:8]
    redis_pid = redis.proc.pid if redis and redis.proc else None
    subs = [f"u{i}" for i in range(args.clients)]
    try:
        async with client_session() as session:
            clients = await connect(session, server.url, subs, ["bench"], sse=sse)
            await asyncio.sleep(0.5)
            gc0 = await full_gc(session, server.url, name)
            with no_gc_pauses():
                cpu0, t0, sys0 = cpu_seconds(pid), time.monotonic(), kernel_seconds(pid)
                redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0
                events = await send(session, server.url, run_id)
                expected = expected_ids(events, len(clients), rooms_per_client)
                total = sum(len(x) for x in expected)
                await wait_for(lambda: sum(len(c.event_ids) for c in clients), total,
                               args.timeout, "delivered")
                cpu1, t1, sys1 = cpu_seconds(pid), time.monotonic(), kernel_seconds(pid)
                redis1 = cpu_seconds(redis_pid) if redis_pid else 0.0
            run = tally(Run(name, len(clients), seconds=t1 - t0, cpu_seconds=cpu1 - cpu0),
                        clients, expected)
            if run.delivered:
                run.extra["of which kernel µs per delivery"] = (sys1 - sys0) / run.delivered * 1e6
            if redis_pid and run.delivered:
                run.extra["Redis CPU µs per delivery"] = (redis1 - redis0) / run.delivered * 1e6
            gc1 = await full_gc(session, server.url, name)
            run.extra["longest full GC ms (since start)"] = gc1.longest_ms
            run.extra["full GCs > 50 ms (measured)"] = gc1.since(gc0)
            for client in clients:
                await client.stop()
            return run
    finally:
        server.kill()
        if redis:
            redis.kill()


async def burst(name: str, args: argparse.Namespace) -> Run:
    async def send(session: aiohttp.ClientSession, url: str, run_id: str) -> list[Event]:
        events = [event(run_id, n, "role:bench") for n in range(args.burst)]
        await publish(session, url, events)
        return events

    return await measure(name, args, lambda i: f"user:u{i}", send,
                         sse=args.sse if name == "realtime" else 0)


async def steady(name: str, args: argparse.Namespace) -> Run:
    async def send(session: aiohttp.ClientSession, url: str, run_id: str) -> list[Event]:
        events, start = [], time.monotonic()
        for n in range(args.steady_events):
            events.append(event(run_id, n, "role:bench"))
            await publish(session, url, events[-1:])
            delay = start + (n + 1) / args.steady_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return events

    return await measure(name, args, lambda i: f"user:u{i}", send,
                         sse=args.sse if name == "realtime" else 0)


async def rooms(name: str, args: argparse.Namespace) -> Run:
    async def send(session: aiohttp.ClientSession, url: str, run_id: str) -> list[Event]:
        events = [event(run_id, n, f"user:u{n % args.clients}") for n in range(args.room_events)]
        for start in range(0, len(events), 100):
            await publish(session, url, events[start:start + 100])
        return events

    return await measure(name, args, lambda i: f"user:u{i}", send)


async def idle(name: str, args: argparse.Namespace) -> Run:
    server = await start_server(name).start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        async with client_session() as session:
            await asyncio.sleep(0.5)
            rss0 = rss_bytes(pid)
            clients = await connect(session, server.url,
                                    [f"u{i}" for i in range(args.idle_clients)], ["bench"])
            await asyncio.sleep(2)
            rss1 = rss_bytes(pid)
            run = tally(Run(name, len(clients)), clients, [set() for _ in clients])
            run.extra["RSS KB per connection"] = (rss1 - rss0) / len(clients) / 1024
            for client in clients:
                await client.stop()
            return run
    finally:
        server.kill()


SCENARIOS: dict[str, tuple[Callable[[str, argparse.Namespace], Awaitable[Run]], str]] = {
    "burst": (burst, "CPU per delivery ≤ 0.25 x reference"),
    "steady": (steady, "CPU per delivery ≤ 0.75 x reference"),
    "rooms": (rooms, ""),
    "idle": (idle, "≤ 20 KB per connection"),
}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", nargs="+", choices=list(SCENARIOS),
                        default=list(SCENARIOS))
    parser.add_argument("--servers", nargs="+", choices=SERVERS,
                        default=["realtime", "reference"])
    parser.add_argument("--redis", action="store_true",
                        help="every server on a private redis-server (bus / adapter)")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sse", type=int, default=0, help="SSE clients (realtime only)")
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--steady-events", type=int, default=200)
    parser.add_argument("--steady-rate", type=float, default=50.0)
    parser.add_argument("--room-events", type=int, default=5000)
    parser.add_argument("--idle-clients", type=int, default=10000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the servers this many times (the order reversed every other "
                             "round) and end with each ratio's median: this machine is noisy")
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CPU})
    if set(args.servers) & set(ENGINES):
        ensure_reference(args.servers)
    for scenario in args.scenario:
        runner, target = SCENARIOS[scenario]
        name = f"{scenario}-redis" if args.redis else scenario
        rounds: list[list[Run]] = []
        for number in range(args.rounds):
            runs = []
            order = args.servers if number % 2 == 0 else args.servers[::-1]
            for server in order:
                suffix = f" (round {number + 1} of {args.rounds})" if args.rounds > 1 else ""
                print(f"[{scenario}] {server}{suffix} ...", flush=True)
                runs.append(await runner(server, args))
            runs.sort(key=lambda run: args.servers.index(run.server))
            print_table(name, runs, target)
            rounds.append(runs)
        if args.rounds > 1:
            print_rounds(name, rounds)
        save(name, rounds[-1], settings=vars(args),
             rounds=[ratios_to_references(runs) for runs in rounds])


if __name__ == "__main__":
    asyncio.run(main())
