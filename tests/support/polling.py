"""Raw Engine.IO long-polling for tests: the HTTP requests a client makes, one by one.

Each request is a plain ``aiohttp`` call, so a test sees status, headers and body exactly
as the server wrote them, and can overlap requests (a pending GET and a POST) at will.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

#: The Engine.IO endpoint opening a long-polling session.
POLLING = "/socket.io/?EIO=4&transport=polling"
SEPARATOR = "\x1e"


@dataclass
class Answer:
    status: int
    body: str
    headers: CIMultiDictProxy[str]


async def request(http: aiohttp.ClientSession, method: str, url: str, *,
                  timeout: float = 5.0, **kwargs: Any) -> Answer:
    """One HTTP request; ``timeout`` bounds a long-poll that should have answered."""
    async with asyncio.timeout(timeout), http.request(method, url, **kwargs) as response:
        return Answer(response.status, await response.text(), response.headers)


class Polling:
    """One long-polling session of ``url``'s server, driven request by request."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.base = url + POLLING
        self.sid = ""

    @property
    def url(self) -> str:
        return f"{self.base}&sid={self.sid}"

    async def open(self) -> dict[str, Any]:
        """The handshake (a GET without ``sid``): the decoded open packet."""
        answer = await request(self.http, "GET", self.base)
        assert answer.status == 200 and answer.body[:1] == "0", answer
        handshake: dict[str, Any] = orjson.loads(answer.body[1:])
        self.sid = handshake["sid"]
        return handshake

    async def get(self, timeout: float = 5.0) -> Answer:
        return await request(self.http, "GET", self.url, timeout=timeout)

    async def pending(self) -> asyncio.Future[Answer]:
        """A GET left waiting on the server (a long-poll), to be awaited later."""
        waiting = asyncio.ensure_future(self.get())
        await asyncio.sleep(0.05)
        return waiting

    async def post(self, body: str | bytes, timeout: float = 5.0) -> Answer:
        return await request(self.http, "POST", self.url, data=body, timeout=timeout)

    async def send(self, *packets: str) -> None:
        """POST ``packets`` as one payload; the server must answer 200 ``ok``."""
        answer = await self.post(SEPARATOR.join(packets))
        assert (answer.status, answer.body) == (200, "ok"), answer

    async def packets(self, count: int, timeout: float = 5.0) -> list[str]:
        """GET until ``count`` packets came (each answer must be 200); return them."""
        received: list[str] = []
        async with asyncio.timeout(timeout):
            while len(received) < count:
                answer = await self.get(timeout)
                assert answer.status == 200, answer
                received += answer.body.split(SEPARATOR)
        assert len(received) == count, received
        return received
