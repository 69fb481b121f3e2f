"""Operations: graceful SIGTERM, metrics that match a scripted scenario, JSON logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, wait_ready
from support.server import SECRET, ServerProcess, free_port, publish_to, run_server, token
from support.sse import sse


async def committed_offset(broker: KafkaBroker, group: str, topic: str) -> int:
    """The group's committed offset for partition 0 (read without joining the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0)) or -1
    finally:
        await consumer.stop()


async def test_sigterm_drains_commits_and_loses_nothing(kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker, partitions=1)
    env = names.env(kafka_broker, REALTIME_SHUTDOWN_GRACE="15")
    total = 200
    first = await ServerProcess(env).start()
    await wait_ready(first.url)
    producer = kafka_broker.producer()
    await producer.start()

    async def stream() -> None:
        for n in range(total):
            await producer.send_and_wait(names.publish, orjson.dumps(
                {"id": f"g{n}", "type": "PUSH", "event": "tick", "rooms": ["user:u1"]}))
            await asyncio.sleep(0.01)

    streaming = asyncio.create_task(stream())
    async with connected(first.url, token("u1")) as before:
        await before.wait_for("tick", count=50, timeout=20)
        assert first.proc is not None
        started = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(first.proc.wait, 20)
        elapsed = time.monotonic() - started
        await before.wait_disconnected()
        delivered = [t["eventId"] for t in before.named("tick")]
    assert code == 0 and elapsed < 15, (code, elapsed, first.log())
    assert before.named("server_shutdown") == [{"reconnect": True}]
    committed = await committed_offset(kafka_broker, names.group, names.publish)
    last_delivered = max(int(i[1:]) for i in delivered)  # offsets equal n (one partition)
    print(f"\nSIGTERM after {len(delivered)} deliveries: exited {code} in {elapsed:.2f}s, "
          f"committed offset {committed}, last delivered offset {last_delivered}")
    assert committed >= last_delivered + 1  # every delivered event is covered

    second = await ServerProcess(env, port=first.port).start()
    try:
        async with connected(second.url, token("u1")) as after:
            await streaming
            await producer.stop()
            seen = set(delivered)
            async with asyncio.timeout(40):
                while len(seen | {t["eventId"] for t in after.named("tick")}) < total:
                    await asyncio.sleep(0.1)
    finally:
        second.kill()


async def test_metrics_match_a_scripted_scenario(kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker), rate_limit_per_second=1,
                          rate_limit_burst=2, rate_limit_disconnect_after=100) as srv:
        await wait_ready(srv.url)
        async with connected(srv.url, token("u1")) as c1, connected(srv.url, token("u2")), \
                sse(srv.url, token("u1")):
            bad = aiohttp.ClientSession()
            async with bad, bad.get(f"{srv.url}/sse?token=nope") as response:
                assert response.status == 401
            event = {"id": "m1", "type": "PUSH", "event": "e", "rooms": ["user:u1"]}
            await srv.publish(event)
            await srv.publish(event)  # duplicate
            await srv.publish({"id": "m2", "type": "NOPE"})  # rejected
            await produce(kafka_broker, names.publish, [b"not json", {
                "id": "m3", "type": "PUSH", "event": "e", "rooms": ["user:u1", "user:u2"]}])
            await c1.wait_for("e", count=2, timeout=15)
            answers = [await c1.call("unsubscribe_order_updates", "x") for _ in range(5)]
            refused = sum(1 for a in answers if a.get("error") == "rate_limited")
            assert refused >= 1
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{srv.url}/metrics") as response:
                text = await response.text()
    expected = [
        'realtime_connections{transport="socketio"} 2.0',
        'realtime_connections{transport="sse"} 1.0',
        'realtime_events_routed_total{type="PUSH"} 2.0',
        "realtime_events_deduplicated_total 1.0",
        'realtime_events_rejected_total{reason="unknown_type",source="http"} 1.0',
        'realtime_events_rejected_total{reason="invalid_json",source="kafka"} 1.0',
        'realtime_auth_failures_total{code="invalid_token"} 1.0',
        f'realtime_client_refusals_total{{reason="rate_limited"}} {float(refused)}',
        "realtime_messages_fanned_out_total 2.0",
        "realtime_fanout_seconds_count 2.0",
        f'realtime_kafka_messages_consumed_total{{topic="{names.publish}"}} 2.0',
        "realtime_bus_connected 1.0",
    ]
    missing = [line for line in expected if line not in text]
    assert not missing, missing


async def test_logs_are_json_lines_without_tokens() -> None:
    port = free_port()
    env = {**os.environ, "REALTIME_JWT_SECRET": SECRET, "REALTIME_PORT": str(port),
           "REALTIME_HOST": "127.0.0.1", "REALTIME_LOG_LEVEL": "DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    secret_token = token("logme", ["service"])
    try:
        await ServerProcess.wait_healthy(url, proc)
        async with connected(f"{url}?token={secret_token}", auth={}):
            pass
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/sse?token={secret_token}x") as response:
                assert response.status == 401
        await publish_to(url, {"id": "l1", "type": "NOPE"}, bearer=secret_token)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=20)
    lines = [line for line in stderr.decode().splitlines() if line.strip()]
    assert lines, "the server logged nothing at DEBUG"
    for line in lines:
        entry = orjson.loads(line)  # every line is one JSON object
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    assert secret_token not in stderr.decode()
    assert secret_token.split(".")[2] not in stderr.decode()
