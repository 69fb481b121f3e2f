"""Real python-socketio clients that record what they receive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import socketio


class Recorder:
    """An ``AsyncClient`` that records every event (name, payload) in arrival order.

    With connection-state recovery on (the default), a delivered event carries its
    position as a last, string argument (the recovery offset): it is kept in ``offsets``
    and the payload alone in ``events``."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.offsets: list[str] = []
        self._changed = asyncio.Event()
        self.disconnected = asyncio.Event()

        @self.client.on("*")
        async def _any(event: str, *args: Any) -> None:
            if len(args) == 2 and isinstance(args[1], str) and isinstance(args[0], dict) \
                    and args[0].get("position") == args[1]:
                self.offsets.append(args[1])
                args = args[:1]
            self.events.append((event, args[0] if len(args) == 1 else list(args)))
            self._changed.set()

        @self.client.on("disconnect")
        async def _disconnect(*_: Any) -> None:
            self.disconnected.set()
            self._changed.set()

    def named(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    async def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        """Wait until ``count`` events called ``name`` arrived; return their payloads."""
        async with asyncio.timeout(timeout):
            while len(self.named(name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.named(name)

    async def wait_disconnected(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self.disconnected.wait()

    async def call(self, event: str, data: Any = None, timeout: float = 5.0) -> Any:
        return await self.client.call(event, data, timeout=timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        await self.client.emit(event, data)


@contextlib.asynccontextmanager
async def connected(url: str, token: str | None = None, *, auth: dict[str, Any] | None = None,
                    headers: dict[str, str] | None = None,
                    transports: list[str] | None = None) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    if auth is None and token is not None:
        auth = {"token": token}
    await recorder.client.connect(url, auth=auth, headers=headers or {},
                                  transports=transports or ["websocket"], wait_timeout=5)
    try:
        yield recorder
    finally:
        with contextlib.suppress(Exception):
            await recorder.client.disconnect()


async def quiet(seconds: float = 0.3) -> None:
    """Give in-flight messages time to arrive (used before asserting an absence)."""
    await asyncio.sleep(seconds)
