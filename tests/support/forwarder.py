"""A TCP forwarder standing in for a load balancer: it sends every new connection to the
current target, which a test switches (an instance died; its clients land on another)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from support.server import free_port


class Forwarder:
    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._pipes: set[asyncio.Task[None]] = set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()


@contextlib.asynccontextmanager
async def forwarding(target_port: int) -> AsyncIterator[Forwarder]:
    forwarder = Forwarder(target_port)
    server = await asyncio.start_server(forwarder._accept, "127.0.0.1", forwarder.port)
    try:
        yield forwarder
    finally:
        server.close()
        for task in list(forwarder._pipes):
            task.cancel()
