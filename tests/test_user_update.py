"""`user_update_request` without Kafka, and with a failing request sink."""

from __future__ import annotations

import time

from support.clients import connected
from support.server import run_server, token


class FailingSink:
    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        raise ConnectionError("broker gone")


REQUEST = {"userId": "u1", "updates": {"name": "x"}, "operationId": "op-7"}


async def test_without_kafka_the_client_gets_a_clear_error() -> None:
    async with run_server() as srv, connected(srv.url, token("u1")) as client:
        await client.emit("user_update_request", REQUEST)
        [error] = await client.wait_for("error")
        assert error["operationId"] == "op-7"
        assert "Kafka is not configured" in error["message"]


async def test_failing_sink_answers_fast_and_admin_may_update_others() -> None:
    async with run_server(request_sink=FailingSink()) as srv, \
            connected(srv.url, token("root", ["admin"])) as admin:
        started = time.monotonic()
        answer = await admin.call("user_update_request", REQUEST)
        assert answer["ok"] is False and answer["error"] == "unavailable"
        assert answer["operationId"] == "op-7" and time.monotonic() - started < 1
        assert (await admin.wait_for("error"))[0]["message"].startswith("could not queue")
