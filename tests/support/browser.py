"""Headless Chromium (Debian's package) driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from support.server import free_port

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


class Page:
    """One page target: evaluate JavaScript and read the DOM."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def evaluate(self, expression: str) -> Any:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": "Runtime.evaluate",
                                  "params": {"expression": expression, "returnByValue": True}})
        async with asyncio.timeout(10):
            while True:
                message = json.loads((await self._ws.receive()).data)
                if message.get("id") == call_id:
                    result = message["result"]
                    if "exceptionDetails" in result:
                        raise AssertionError(result["exceptionDetails"])
                    return result["result"].get("value")


@contextlib.asynccontextmanager
async def chromium(url: str) -> AsyncIterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is required (apt-get install chromium; scripts/test.sh does)"
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-test-")
    proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}",
                             f"--remote-debugging-port={port}", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as session:
            target = None
            async with asyncio.timeout(30):
                while target is None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                            pages = [t for t in await resp.json() if t.get("type") == "page"]
                            target = next((t for t in pages if url in t.get("url", "")), None)
                    await asyncio.sleep(0.2)
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
