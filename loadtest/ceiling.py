"""Sustained ceiling: the highest event rate each server keeps with p99 latency < 50 ms.

    python -m loadtest.ceiling                                   # realtime and uws, memory
    python -m loadtest.ceiling --servers realtime reference uws --per-post 1 100 --redis

N clients each in their own user room (``--clients``); every event goes to one of them
(one recipient per event), POSTed ``--per-post`` events per request. For each server and
batch size the rate climbs through ``--rates`` (events/s), ``--seconds`` each; a step
passes when every event arrived and the p99 publish → client latency is under
``--p99-ms``. The first failing step ends the climb; the ceiling is the last step passed.
Servers are pinned to CPU 0 and the load client to CPU 1, as in ``loadtest.broadcast``;
a step the load client itself could not send on time is reported as such, not as a pass.
Output: a table, ``loadtest/results/ceiling[-redis].json`` (every step) and ``.png``
(p99 latency against the offered rate).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

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
from loadtest.proc import cpu_seconds
from loadtest.report import RESULTS, Run, print_table, save, wait_for
from support.redis_server import RedisServer

MAX_IN_FLIGHT = 64


@dataclass
class Step:
    """One rate held for a while: what was offered, sent, delivered and how late."""

    rate: float
    sent: int = 0
    delivered: int = 0
    send_lag: float = 0.0
    cpu_us_per_event: float = math.nan
    latency_ms: dict[str, float] = field(default_factory=dict)
    passed: bool = False
    reason: str = ""


async def hold_rate(session: aiohttp.ClientSession, url: str, clients: list[LeanClient],
                    rate: float, args: argparse.Namespace, run_id: str) -> Step:
    """Send ``rate`` events/s for ``args.seconds``, in requests of ``args.per_post``."""
    step = Step(rate)
    total = max(args.per_post, int(rate * args.seconds))
    interval = args.per_post / rate
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    for client in clients:
        client.latencies.clear()
        client.event_ids.clear()

    async def post(events: list[dict[str, Any]]) -> None:
        async with in_flight:
            await publish(session, url, events)

    start = time.monotonic()
    for n in range(0, total, args.per_post):
        due = start + (n // args.per_post) * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        step.send_lag = max(step.send_lag, -delay)
        batch = [event(run_id, n + k, f"user:u{(n + k) % len(clients)}")
                 for k in range(min(args.per_post, total - n))]
        task = asyncio.create_task(post(batch))
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


async def climb(name: str, per_post: int, args: argparse.Namespace) -> tuple[Run, list[Step]]:
    """One server, one batch size: the rate steps up until one fails."""
    args.per_post = per_post
    redis = RedisServer().start() if args.redis else None
    server = await start_server(name, redis_url=redis.url if redis else None).start()
    assert server.proc is not None
    steps: list[Step] = []
    label = f"{name} x{per_post}"
    try:
        async with client_session() as session:
            clients = await connect(session, server.url,
                                    [f"u{i}" for i in range(args.clients)], ["bench"])
            await asyncio.sleep(0.5)
            for rate in args.rates:
                cpu0 = cpu_seconds(server.proc.pid)
                with no_gc_pauses():
                    step = await hold_rate(session, server.url, clients, rate, args,
                                           uuid.uuid4().hex[:8])
                if step.delivered:
                    step.cpu_us_per_event = \
                        (cpu_seconds(server.proc.pid) - cpu0) / step.delivered * 1e6
                steps.append(judge(step, args))
                p99 = step.latency_ms.get("p99", math.nan)
                print(f"    {label}: {rate:>8,.0f} events/s  p99 {p99:7.1f} ms  "
                      f"{'pass' if step.passed else 'FAIL: ' + step.reason}", flush=True)
                if not step.passed:
                    break
            for client in clients:
                await client.stop()
    finally:
        server.kill()
        if redis:
            redis.kill()
    passed = [s for s in steps if s.passed]
    run = Run(label, args.clients)
    run.extra["ceiling events/s"] = int(passed[-1].rate) if passed else 0
    if passed:
        run.latency_ms = dict(passed[-1].latency_ms)
        run.extra["CPU µs per event at ceiling"] = passed[-1].cpu_us_per_event
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
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CPU})
    if set(args.servers) & set(ENGINES):
        ensure_reference(args.servers)
    name = "ceiling-redis" if args.redis else "ceiling"
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
