"""Run real servers for tests: in-process on a real port, or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from realtime.app import Server, build_server
from realtime.auth.tokens import mint_token
from realtime.requests import RequestSink
from realtime.settings import load_settings

SECRET = "test-secret-0123456789abcdef0123456789"
#: The ``/metrics`` sample counting Socket.IO clients.
SOCKETIO_CONNECTIONS = 'realtime_connections{transport="socketio"}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(sub: str = "alice", roles: list[str] | None = None, ttl: float = 3600,
          secret: str = SECRET, **kwargs: Any) -> str:
    return mint_token(secret, sub, roles=roles, ttl=ttl, **kwargs)


def service_token() -> str:
    return token("backend", ["service"])


@dataclass
class Running:
    server: Server
    url: str

    async def publish(self, events: Any, *, headers: dict[str, str] | None = None,
                      bearer: str | None = None) -> tuple[int, Any]:
        return await publish_to(self.url, events, headers=headers, bearer=bearer)


async def publish_to(url: str, events: Any, *, headers: dict[str, str] | None = None,
                     bearer: str | None = None) -> tuple[int, Any]:
    """POST /api/v1/publish; returns (status, decoded body)."""
    all_headers = {"Authorization": f"Bearer {bearer or service_token()}", **(headers or {})}
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/api/v1/publish", data=orjson.dumps(events), headers=all_headers
    ) as response:
        return response.status, await response.json(content_type=None)


async def call(url: str, method: str, path: str, body: Any = None, *,
               bearer: str | None = None, raw: bytes | None = None) -> tuple[int, Any]:
    """One request with a service token (control API); returns (status, decoded JSON)."""
    headers = {"Authorization": f"Bearer {bearer or service_token()}"}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{url}{path}", data=data, headers=headers) as response:
        return response.status, await response.json()


async def presence(url: str, room: str, bearer: str | None = None) -> tuple[int, Any]:
    """GET /api/v1/rooms/{room}/presence; returns (status, decoded body)."""
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/api/v1/rooms/{room}/presence",
            headers={"Authorization": f"Bearer {bearer or service_token()}"}) as response:
        return response.status, await response.json()


async def metric(url: str, sample: str) -> float:
    """The value of one ``/metrics`` sample, e.g. ``realtime_connections{transport="socketio"}``."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    raise AssertionError(f"no sample {sample} in /metrics")


@contextlib.asynccontextmanager
async def run_server(request_sink: RequestSink | None = None,
                     **overrides: Any) -> AsyncIterator[Running]:
    """Start a fully wired server in this process on a free loopback port."""
    port = free_port()
    settings = load_settings(**{"jwt_secret": SECRET, "host": "127.0.0.1", "port": port,
                                **overrides})
    server = build_server(settings, request_sink=request_sink)
    runner = web.AppRunner(server.app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Running(server, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


class ServerProcess:
    """``realtime serve`` as a child process (for kill -9 and multi-instance tests)."""

    def __init__(self, env: dict[str, str] | None = None, port: int | None = None, *,
                 argv: list[str] | None = None, cpus: str | None = None) -> None:
        """``argv`` runs another server (benchmarks: the Node reference) on ``PORT``;
        ``cpus`` pins it (``taskset -c``) so benchmarks keep server and load apart."""
        self.port = port or free_port()
        self.argv = argv or [sys.executable, "-m", "realtime", "serve"]
        if cpus is not None:
            self.argv = ["taskset", "-c", cpus, *self.argv]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REALTIME_JWT_SECRET": SECRET, "REALTIME_HOST": "127.0.0.1",
                    "REALTIME_PORT": str(self.port), "PORT": str(self.port), "SECRET": SECRET,
                    **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = f"/tmp/realtime-test-{self.port}.log"

    async def start(self, timeout: float = 20.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        try:
            await self.wait_healthy(self.url, self.proc, timeout)
        except RuntimeError as exc:
            self.kill()  # a server that came up too late must not outlive the caller
            raise RuntimeError(f"{exc}:\n{self.log()}") from None
        return self

    @staticmethod
    async def wait_healthy(url: str, proc: subprocess.Popen[bytes],
                           timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError("server exited early")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as handle:
            return handle.read()[-5000:]

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)
