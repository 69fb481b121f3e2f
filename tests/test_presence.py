"""Presence counts per room, in one instance and across instances sharing Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from support.clients import connected
from support.redis_server import RedisServer
from support.server import ServerProcess, presence, run_server, token
from support.sse import sse


async def wait_counts(url: str, room: str, connections: int, users: int,
                      limit: float = 10.0) -> None:
    body: Any = None
    async with asyncio.timeout(limit):
        while True:
            _, body = await presence(url, room)
            if (body["connections"], body["users"]) == (connections, users):
                return
            await asyncio.sleep(0.1)


async def test_presence_in_memory_needs_a_service_token() -> None:
    async with run_server() as srv:
        assert (await presence(srv.url, "user:u1", bearer=token("u1")))[0] == 403
        async with connected(srv.url, token("u1")), connected(srv.url, token("u1")), \
                sse(srv.url, token("u2", ["staff"])):
            status, body = await presence(srv.url, "user:u1")
            assert status == 200 and body == {"room": "user:u1", "connections": 2, "users": 1}
            await wait_counts(srv.url, "role:staff", 1, 1)
        await wait_counts(srv.url, "user:u1", 0, 0)


async def test_presence_across_instances_and_after_a_kill(redis_server: RedisServer) -> None:
    env = {"REALTIME_REDIS_URL": redis_server.url, "REALTIME_PRESENCE_TTL_SECONDS": "3"}
    a, b = ServerProcess(env), ServerProcess(env)
    await asyncio.gather(a.start(), b.start())
    try:
        async with connected(a.url, token("u1", ["staff"])), \
                connected(a.url, token("u2", ["staff"])), \
                connected(b.url, token("u1", ["staff"])) as on_b:
            await wait_counts(a.url, "role:staff", 3, 2)
            await wait_counts(b.url, "user:u1", 2, 1)
            await on_b.client.disconnect()
            await wait_counts(a.url, "user:u1", 1, 1)
            async with connected(b.url, token("u3", ["staff"])):
                await wait_counts(a.url, "role:staff", 3, 3)
                b.kill()  # kill -9: its clients must stop counting within the TTL
                await wait_counts(a.url, "role:staff", 2, 2, limit=10)
    finally:
        a.kill()
        b.kill()
