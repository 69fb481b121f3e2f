"""The official JavaScript client (socket.io-client 4, run by node) against the server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from support.server import Running, run_server, token

JS_DIR = Path(__file__).parent / "js"


def _ensure_node_modules() -> None:
    assert shutil.which("node"), "node is required for the official-client test"
    assert (JS_DIR / "node_modules" / "socket.io-client").exists(), \
        "run `npm ci` in tests/js (scripts/test.sh does)"


class JsClient:
    """``node client.mjs`` as a subprocess; its stdout is a JSON line per happening."""

    def __init__(self, url: str, config: dict[str, Any]) -> None:
        self.url, self.config = url, config
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> JsClient:
        _ensure_node_modules()
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / "client.mjs"), self.url, json.dumps(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return self

    async def until(self, kind: str, limit: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(limit):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    stderr = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"node exited before {kind}: {self.lines} {stderr!r}")
                self.lines.append(json.loads(line))
                if self.lines[-1]["type"] == kind:
                    return self.lines[-1]

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 10)


async def _publish_to(srv: Running, user: str, event_id: str) -> None:
    status, body = await srv.publish({"id": event_id, "type": "PUSH", "event": "greeting",
                                      "rooms": [f"user:{user}"], "data": {"hello": "js"}})
    assert status == 202, body


async def test_official_client_receives_events_and_acks() -> None:
    async with run_server() as srv:
        client = await JsClient(srv.url, {
            "auth": {"token": token("js-user", ["admin"])},
            "emit": [{"event": "subscribe_order_updates", "args": ["o-js"], "ack": True}],
            "exitAfterEvents": 2, "timeoutMs": 10000}).start()
        await client.until("ready")
        await _publish_to(srv, "js-user", "js-1")
        await client.until("disconnect")  # it exits after 2 events
        [ack] = [line for line in client.lines if line["type"] == "ack"]
        assert ack["response"] == {"ok": True, "orderId": "o-js", "status": None}
        events = [line for line in client.lines if line["type"] == "event"]
        assert [e["event"] for e in events] == ["order_status", "greeting"]
        assert events[1]["args"][0]["hello"] == "js"
        assert events[1]["args"][0]["eventId"] == "js-1"
        assert await client.wait() == 0


async def test_official_client_gets_connect_error_with_code() -> None:
    async with run_server() as srv:
        for bad, code in [("garbage", "invalid_token"),
                          (token("late", ttl=-60), "expired")]:
            client = await JsClient(srv.url, {"auth": {"token": bad}}).start()
            error = await client.until("connect_error")
            assert error["data"] == {"code": code}, error
            assert error["message"]
            assert await client.wait() == 0


async def test_official_client_over_long_polling() -> None:
    async with run_server() as srv:
        client = await JsClient(srv.url, {"auth": {"token": token("poller")},
                                          "transports": ["polling"],
                                          "exitAfterEvents": 1}).start()
        await client.until("ready")
        await _publish_to(srv, "poller", "poll-1")
        event = await client.until("event")
        assert event["args"][0]["eventId"] == "poll-1"
