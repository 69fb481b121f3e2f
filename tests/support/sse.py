"""A real SSE client for tests: aiohttp streaming plus a small frame parser."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class Frame:
    event: str
    data: Any
    id: str | None = None


@dataclass
class SSEClient:
    frames: list[Frame] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def named(self, event: str) -> list[Any]:
        return [f.data for f in self.frames if f.event == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.named(event)) < count:
                await asyncio.sleep(0.01)
        return self.named(event)

    async def read(self, response: aiohttp.ClientResponse) -> None:
        """Split chunks into lines ourselves: a frame may be far longer than aiohttp's
        line limit (events up to the server's size limit)."""
        fields: dict[str, str] = {}
        pending = bytearray()
        try:
            async for chunk in response.content.iter_any():
                pending += chunk
                *lines, rest = pending.split(b"\n")
                pending = bytearray(rest)
                for raw in lines:
                    fields = self._line(raw.decode(), fields)
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            self.ended.set()

    def _line(self, line: str, fields: dict[str, str]) -> dict[str, str]:
        if not line:
            if "data" in fields:
                self.frames.append(Frame(fields.get("event", "message"),
                                         orjson.loads(fields["data"]), fields.get("id")))
            return {}
        if line.startswith(":"):
            self.comments += 1
        elif line.startswith("retry:"):
            self.retry = int(line[6:])
        else:
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        return fields


@contextlib.asynccontextmanager
async def sse(url: str, token: str | None = None, *, query: str = "",
              headers: dict[str, str] | None = None) -> AsyncIterator[SSEClient]:
    """Open ``/sse`` and read frames in the background until the block ends."""
    client = SSEClient()
    all_headers = dict(headers or {})
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/sse{query}", headers=all_headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        assert response.status == 200, await response.text()
        client.headers = dict(response.headers)
        task = asyncio.create_task(client.read(response))
        await asyncio.sleep(0.05)  # let the server register the stream
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
