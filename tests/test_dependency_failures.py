"""A Redis outage answers 503 in the uniform error JSON and never shows internal addresses.

The details (which host, which error) go to the log, one line without a traceback, and to
``/metrics``. Uses a real redis-server that the test kills.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from support.kafka_helpers import wait_ready
from support.logs import captured_logs
from support.redis_server import RedisServer
from support.server import run_server, service_token

PUSH = {"id": "p", "type": "PUSH", "event": "news", "rooms": ["user:u"]}
ORDER = {"id": "o", "type": "ORDER_STATUS_UPDATED", "orderId": "o-1", "newStatus": "PAID"}


async def call(method: str, url: str, *, json: Any = None, bearer: bool = True,
               headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    all_headers = {"Authorization": f"Bearer {service_token()}"} if bearer else {}
    async with aiohttp.ClientSession() as session, session.request(
            method, url, json=json, headers={**all_headers, **(headers or {})}) as response:
        return response.status, await response.text(), dict(response.headers)


def assert_unavailable(status: int, text: str, headers: dict[str, str], port: int) -> None:
    assert status == 503, text
    assert headers["Content-Type"].startswith("application/json"), text
    assert '"error":{"code":"unavailable"' in text.replace(" ", ""), text
    assert "127.0.0.1" not in text and str(port) not in text, text
    assert "Retry-After" in headers


@pytest.mark.timeout(60)
async def test_redis_outage_is_503_json_without_addresses(redis_server: RedisServer) -> None:
    port = redis_server.port
    with captured_logs() as logs:
        async with run_server(redis_url=redis_server.url) as srv:
            await wait_ready(srv.url)
            redis_server.kill()
            body = await wait_ready(srv.url, ready=False, limit=15)
            assert "redis" in body["checks"]["bus"]
            status, text, _ = await call("GET", f"{srv.url}/readyz", bearer=False)
            assert status == 503 and "127.0.0.1" not in text and str(port) not in text, text

            presence = f"{srv.url}/api/v1/rooms/user:u/presence"
            assert_unavailable(*await call("GET", presence), port)
            publish = f"{srv.url}/api/v1/publish"
            for event, headers in [(PUSH, {}), (ORDER, {}), (PUSH, {"Idempotency-Key": "k"})]:
                assert_unavailable(*await call("POST", publish, json=event, headers=headers),
                                   port)

            _, metrics, _ = await call("GET", f"{srv.url}/metrics", bearer=False)
            failures = [line for line in metrics.splitlines()
                        if line.startswith("realtime_dependency_failures_total{")]
            assert any('operation="presence"' in line for line in failures), failures
            assert any('operation="publish"' in line for line in failures), failures
    logs.assert_clean()
    # the operator still learns what, where and why from the log
    messages = [r.getMessage() for r in logs.records]
    assert any(m.startswith("presence unavailable: redis") for m in messages), messages
    assert any(m.startswith("publish unavailable: redis") and f"127.0.0.1:{port}" in m
               for m in messages), messages
