"""A well-behaved client and a ``/healthz`` probe, in a process of their own.

Fuzz tests keep the test process busy generating input; measuring the server's latency or
another client's deliveries from that process would measure the test. Run as
``python -m support.watcher URL TOKEN USER`` (with ``tests`` on ``PYTHONPATH``): it connects
a python-socketio client as USER, publishes a ``tick`` to ``user:USER`` every 100 ms, probes
``/healthz`` every 20 ms, prints ``{"ready": true}`` once connected, then one JSON status
line for each line read on stdin, and stops at end of input.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from support.clients import Recorder, connected
from support.hostile import LatencyProbe
from support.server import publish_to

#: A tick published this long ago and not received counts as lost.
LATE = 2.0


class Watch:
    def __init__(self, url: str, user: str) -> None:
        self.url, self.user = url, user
        self.published: dict[int, float] = {}  # tick number -> when the publish returned
        self.probe = LatencyProbe(url)
        self.publish_errors: list[str] = []

    async def publish(self) -> None:
        for n in range(10**9):
            try:
                status, body = await publish_to(self.url, {
                    "id": f"tick-{n}", "type": "PUSH", "event": "tick",
                    "rooms": [f"user:{self.user}"], "data": {"n": n}})
                if status == 202:
                    self.published[n] = time.monotonic()
                else:
                    self.publish_errors.append(f"{status} {body}")
            except Exception as exc:  # reported in the status, not raised
                self.publish_errors.append(repr(exc))
            await asyncio.sleep(0.1)

    def status(self, client: Recorder) -> dict[str, Any]:
        received = {data["n"] for data in client.named("tick")}
        now = time.monotonic()
        lost = [n for n, at in self.published.items() if at < now - LATE and n not in received]
        return {"published": len(self.published), "received": len(received), "lost": lost[:20],
                "connected": bool(client.client.connected),
                "disconnected": client.disconnected.is_set(),
                "probes": len(self.probe.latencies), "worst": round(self.probe.worst, 4),
                "slow": self.probe.slow(0.1), "probe_failures": self.probe.failures[:5],
                "publish_errors": self.publish_errors[:5]}


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


async def main(url: str, token: str, user: str) -> None:
    watch = Watch(url, user)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    async with connected(url, token) as client:
        tasks = [asyncio.create_task(watch.probe.run(stop)),
                 asyncio.create_task(watch.publish())]
        _say({"ready": True})
        while await loop.run_in_executor(None, sys.stdin.readline):
            _say(watch.status(client))
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
