"""The `realtime` command line: serve (zero configuration), token, publish."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import jwt
import orjson

from realtime.settings import DEV_JWT_SECRET
from support.clients import connected
from support.server import ServerProcess, free_port


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "realtime", *args], env=env, input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def bare_env(**extra: str) -> dict[str, str]:
    """No REALTIME_* configuration at all (except what the test names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return {**env, **extra}


async def test_serve_with_no_configuration_prints_how_to_get_a_token() -> None:
    port = free_port()
    env = bare_env(REALTIME_PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtime", "serve", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        banner = b""
        async with asyncio.timeout(20):
            while b"realtime token" not in banner:
                banner += await proc.stdout.readline()
        text = banner.decode()
        assert "in-memory" in text and "Kafka off" in text
        assert "realtime token --sub alice --roles admin" in text
        # The printed command works and its token is accepted by this server.
        token = cli("token", "--sub", "alice", "--roles", "admin", env=env).strip()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
        async with connected(f"http://127.0.0.1:{port}", token) as client:
            assert client.client.connected
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)


def test_token_carries_the_requested_claims() -> None:
    out = cli("token", "--sub", "u7", "--roles", "a,b", "--orders", "1,2", "--ttl", "60",
              env=bare_env())
    claims = jwt.decode(out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u7" and claims["roles"] == ["a", "b"]
    assert claims["orders"] == ["1", "2"] and claims["exp"] - claims["iat"] == 60


async def test_publish_from_file_and_stdin(tmp_path: Path) -> None:
    server = await ServerProcess().start()
    try:
        env = {**server.env}
        token = cli("token", "--sub", "reader", env=env).strip()
        async with connected(server.url, token) as client:
            event = {"type": "PUSH", "event": "cli", "rooms": ["user:reader"]}
            single = tmp_path / "one.json"
            single.write_bytes(orjson.dumps({**event, "id": "f1"}))
            listing = tmp_path / "list.json"
            listing.write_bytes(orjson.dumps([{**event, "id": "f2"}, {**event, "id": "f3"}]))
            await asyncio.to_thread(cli, "publish", str(single), env=env)
            await asyncio.to_thread(cli, "publish", str(listing), env=env)
            lines = "\n".join(orjson.dumps({**event, "id": f"s{n}"}).decode() for n in (4, 5))
            out = await asyncio.to_thread(cli, "publish", "-", env=env, stdin=lines)
            assert orjson.loads(out)["accepted"] == ["s4", "s5"]
            received = await client.wait_for("cli", count=5)
            assert [r["eventId"] for r in received] == ["f1", "f2", "f3", "s4", "s5"]
    finally:
        server.kill()
