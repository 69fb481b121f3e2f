"""The deployment, natively: deploy/native.py starts what docker-compose.yml starts (Kafka as
Tansu, Redis, two instances, HAProxy with the shipped deploy/haproxy.cfg) and the official
client goes through the balancer: long-polling (sticky), the WebSocket upgrade, and SSE."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from support.js_client import JsClient
from support.server import SECRET, publish_to, token
from support.sse import sse

NATIVE = Path(__file__).resolve().parent.parent / "deploy" / "native.py"
ACKS = 20  # acknowledged emits over long-polling: each needs a POST and a GET poll


@dataclass
class Topology:
    url: str
    instances: list[str]
    kafka: str
    logs: Path

    async def routes(self, engine_id: str, count: int) -> list[tuple[str, str]]:
        """(server, request line) of the balancer's log lines for one Engine.IO session,
        once there are ``count`` of them (a request is logged when it ends)."""
        pattern = re.compile(r" realtime/(\S+) .*\"(\S+ \S*sid=" + re.escape(engine_id) + r"\S*)")
        found: list[tuple[str, str]] = []
        async with asyncio.timeout(10):
            while len(found) < count:
                text = (self.logs / "haproxy.log").read_text(errors="replace")
                found = [(m[1], m[2]) for m in pattern.finditer(text)]
                await asyncio.sleep(0.1)
        return found


def _read_ready_line(proc: subprocess.Popen[bytes], errors: Any, limit: float) -> bytes:
    assert proc.stdout is not None
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.5)
        if readable:
            line = proc.stdout.readline()
            if line:
                return line
            break
    errors.seek(0)
    raise AssertionError(f"deploy/native.py did not get ready: {errors.read().decode()[-4000:]}")


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    assert shutil.which("haproxy"), "haproxy is required (scripts/test.sh installs it)"
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, str(NATIVE), "--port", "0"],
                                env={**os.environ, "REALTIME_JWT_SECRET": SECRET,
                                     "REALTIME_SHUTDOWN_GRACE": "5"},
                                stdout=subprocess.PIPE, stderr=errors)
        try:
            ready = json.loads(_read_ready_line(proc, errors, 120))
            yield Topology(ready["url"], ready["instances"], ready["kafka"], Path(ready["logs"]))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
        assert code == 0, "deploy/native.py did not stop cleanly"
        port = int(ready["url"].rsplit(":", 1)[1])
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
            pass  # the balancer is gone
        assert not Path(ready["logs"]).exists()


async def _greet(url: str, user: str, event_id: str) -> None:
    status, body = await publish_to(url, {"id": event_id, "type": "PUSH", "event": "greeting",
                                          "rooms": [f"user:{user}"], "data": {"via": "lb"}})
    assert status == 202, body


def _unsubscribes(count: int) -> list[dict[str, Any]]:
    return [{"event": "unsubscribe_order_updates", "args": [f"o-{n}"], "ack": True}
            for n in range(count)]


async def test_long_polling_sticks_to_one_instance(topology: Topology) -> None:
    client = await JsClient(topology.url, {
        "auth": {"token": token("poller")}, "transports": ["polling"], "withCredentials": True,
        "emit": _unsubscribes(ACKS), "exitAfterEvents": 1, "timeoutMs": 30000}).start()
    connect = await client.until("connect", "connect_error", limit=30)
    assert connect["type"] == "connect", connect
    await client.until("ready", limit=30)
    assert len(client.of("ack")) == ACKS and not client.of("ack_error"), client.lines
    await _greet(topology.url, "poller", "poll-lb-1")  # may land on the other instance
    event = await client.until("event", limit=15)
    assert event["args"][0]["eventId"] == "poll-lb-1"
    assert await client.wait() == 0
    routes = await topology.routes(connect["engineId"], 2 * ACKS)
    assert len({server for server, _ in routes}) == 1, routes  # every request: one instance


async def test_without_the_cookie_long_polling_breaks(topology: Topology) -> None:
    """The control: the same client without a cookie jar is spread over both instances and
    its session fails, so the test above passes because of the sticky cookie."""
    client = await JsClient(topology.url, {
        "auth": {"token": token("poller")}, "transports": ["polling"],
        "withCredentials": False, "emit": _unsubscribes(ACKS), "timeoutMs": 30000}).start()
    try:
        ended = await client.until("connect_error", "disconnect", limit=30)
    finally:
        await client.kill()
    assert len(client.of("ack")) < ACKS, client.lines
    assert ended["type"] in {"connect_error", "disconnect"}


async def test_default_transports_upgrade_to_websocket(topology: Topology) -> None:
    client = await JsClient(topology.url, {
        "auth": {"token": token("upgrader")}, "transports": ["polling", "websocket"],
        "withCredentials": True, "exitAfterEvents": 1, "timeoutMs": 30000}).start()
    connect = await client.until("connect", "connect_error", limit=30)
    assert connect["type"] == "connect", connect
    assert [line["transport"] for line in client.of("open")] == ["polling"]
    upgrades = client.of("upgrade") or [await client.until("upgrade", limit=15)]
    assert [line["transport"] for line in upgrades] == ["websocket"]
    await _greet(topology.url, "upgrader", "ws-lb-1")
    event = await client.until("event", limit=15)
    assert event["args"][0]["eventId"] == "ws-lb-1"
    assert await client.wait() == 0
    routes = await topology.routes(connect["engineId"], 2)
    assert any("transport=websocket" in request for _, request in routes), routes
    assert len({server for server, _ in routes}) == 1, routes


async def test_sse_through_the_balancer_gets_http_and_kafka_events(topology: Topology) -> None:
    async with sse(topology.url, token("streamer")) as stream:
        assert {k.lower(): v for k, v in stream.headers.items()}["x-accel-buffering"] == "no"
        await _greet(topology.url, "streamer", "sse-lb-1")
        producer = AIOKafkaProducer(bootstrap_servers=topology.kafka, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait("realtime.publish", orjson.dumps(
                {"id": "sse-lb-2", "type": "PUSH", "event": "greeting",
                 "rooms": ["user:streamer"], "data": {"via": "kafka"}}))
        finally:
            await producer.stop()
        greetings = await stream.wait_for("greeting", count=2, timeout=15)
    assert [g["eventId"] for g in greetings] == ["sse-lb-1", "sse-lb-2"]


def _children(pid: int) -> set[int]:
    return {int(child) for child in
            Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_native_topology_stopped_during_start_up_leaves_nothing_running() -> None:
    proc = subprocess.Popen([sys.executable, str(NATIVE), "--port", "0"],
                            env={**os.environ, "REALTIME_JWT_SECRET": SECRET},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(started := _children(proc.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # Kafka, Redis, then the first instance
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert len(started) >= 3, stderr
    assert proc.returncode == 1 and b"stopped before it was ready" in stderr, stderr
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_native_topology_requires_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REALTIME_JWT_SECRET"}
    result = subprocess.run([sys.executable, str(NATIVE), "--port", "0"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "REALTIME_JWT_SECRET" in result.stderr and "Traceback" not in result.stderr
