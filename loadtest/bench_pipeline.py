"""Where an event's CPU goes before any socket is written: the ingest → bus → frame path in
process, with no I/O, per stage.

    python -m loadtest.bench_pipeline [--events 100000] [--per-request 100]

Requests of ``--per-request`` PUSH events (one user room each, as ``loadtest.broadcast
--scenario rooms`` sends them) go through the stages a publish request takes: decode
(``Ingestor.decode`` and the raw-text nesting bound), validate (``Ingestor.validate_many``:
routing, metrics), publish (``Ingestor.publish_many`` on the memory bus: de-duplication,
positions, encoding, history) with the gateway's step as listener (each message's WebSocket
frame built, nothing sent). Reports µs per event per stage, the garbage collector off (as
the server's young collections are rare: README "Performance"). What is left of a delivery
in ``loadtest.broadcast`` — the write system call, the event loop, HTTP — is not here.
Output: a table and ``results/bench_pipeline.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from loadtest.lean_client import no_gc_pauses
from loadtest.report import Progress, Run, print_table, save
from realtime.bus.base import Message
from realtime.bus.memory import MemoryBus
from realtime.ingest.pipeline import Ingestor
from realtime.metrics import Metrics
from realtime.routing import Router
from realtime.routing.shape import text_within
from realtime.state.orders import MemoryOrderStore
from realtime.transport.payload import event_frame

STAGES = ("decode", "validate", "publish + frame")


def requests(count: int, per_request: int) -> list[bytes]:
    return [orjson.dumps([{"id": f"bench-{n}", "type": "PUSH", "event": "bench",
                           "rooms": [f"user:u{n % 5000}"], "data": {"n": n, "ts": time.time()}}
                          for n in range(start, start + per_request)])
            for start in range(0, count, per_request)]


async def measure(bodies: list[bytes]) -> dict[str, float]:
    bus = MemoryBus()
    ingestor = Ingestor(Router(), bus, MemoryOrderStore(), Metrics(), 1 << 20)
    frames: list[bytes] = []

    async def gateway(messages: list[Message]) -> None:
        frames.extend(event_frame(m.event, m.body, m.position) for m in messages)

    bus.subscribe(gateway)
    spent = dict.fromkeys(STAGES, 0.0)
    progress = Progress("requests", len(bodies))
    clock = time.perf_counter
    for number, raw in enumerate(bodies):
        began = clock()
        events = ingestor.decode(raw)
        shallow = text_within(raw)
        decoded = clock()
        routed, refused = ingestor.validate_many(events, "http", shallow)  # type: ignore[arg-type]
        validated = clock()
        await ingestor.publish_many(routed)
        published = clock()
        assert not refused
        spent["decode"] += decoded - began
        spent["validate"] += validated - decoded
        spent["publish + frame"] += published - validated
        frames.clear()
        progress.update(number + 1)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-request", type=int, default=100)
    args = parser.parse_args()
    bodies = requests(args.events, args.per_request)
    events = len(bodies) * args.per_request
    with no_gc_pauses():
        spent = asyncio.run(measure(bodies))
    extra = {f"{stage} µs per event": seconds / events * 1e6 for stage, seconds in spent.items()}
    extra["total µs per event"] = sum(spent.values()) / events * 1e6
    runs = [Run("realtime", 0, extra={"events": events, **extra})]
    print_table("per-event path in process (no I/O), memory bus", runs)
    save("bench_pipeline", runs, settings=vars(args))


if __name__ == "__main__":
    main()
