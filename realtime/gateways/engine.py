"""An engine.io server whose WebSocket sockets take prebuilt frames directly.

:meth:`FastEngine.deliver` is the broadcast fast path: given packets already encoded
once, it appends one prebuilt frame to each recipient's outbox — no task, queue or
compression per recipient. A socket takes the fast path only when nothing sent to it
earlier is still in engine.io's queue (``in_flight == 0``), so per-socket order holds;
otherwise, and for long-polling sockets, packets go through engine.io's normal queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import engineio
from engineio import packet as eio_packet

from realtime.gateways.websocket import FastWebSocket, Flusher, Outbox, TeardownThrottle, frame

log = logging.getLogger(__name__)

#: Packets per long-polling response (python-engineio's client decodes at most 16).
MAX_BATCH = 16


class _SocketQueue(asyncio.Queue[Any]):
    """engine.io's per-socket send queue, counting packets not yet handed to the transport.

    engine.io's writer calls ``task_done`` after taking a packet and then hands it to the
    transport without yielding, so ``in_flight == 0`` means the queue holds nothing unsent.
    One ``get`` and the ``get_nowait`` calls after it (one long-polling response) take at
    most :data:`MAX_BATCH` packets: python-engineio's client rejects larger payloads.
    """

    in_flight = 0
    _batch = 0

    async def get(self) -> Any:
        self._batch = 0
        return await super().get()

    def get_nowait(self) -> Any:
        if self._batch >= MAX_BATCH:
            raise asyncio.QueueEmpty
        self._batch += 1
        return super().get_nowait()

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        self.in_flight += 1

    def task_done(self) -> None:
        super().task_done()
        self.in_flight -= 1


class FastEngine(engineio.AsyncServer):  # type: ignore[misc]
    _async: dict[str, Any]  # engine.io's driver table (set by the base class)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._async = {**self._async, "websocket": FastWebSocket}
        self.compress = False
        self.buffer_limit = 1 << 20
        self.on_slow: Callable[[str], None] = lambda sid: None
        self.flusher = Flusher()
        self.teardown = TeardownThrottle()
        self.outboxes: dict[str, tuple[Any, Outbox]] = {}

    def configure(self, *, compress: bool, buffer_limit: int,
                  on_slow: Callable[[str], None]) -> None:
        """``compress`` turns permessage-deflate on (and with it the per-socket path)."""
        self.compress, self.buffer_limit, self.on_slow = compress, buffer_limit, on_slow

    def create_queue(self, *args: Any, **kwargs: Any) -> _SocketQueue:
        return _SocketQueue(*args, **kwargs)

    # --- outboxes ------------------------------------------------------------------

    def open_outbox(self, socket: Any, transport: asyncio.Transport) -> Outbox:
        sid = socket.sid

        def slow(box: Outbox) -> None:
            log.info("websocket client %s too slow (%d bytes unsent); disconnecting",
                     sid, box.transport.get_write_buffer_size())
            box.transport.abort()
            self.on_slow(sid)

        box = Outbox(transport, self.flusher, self.buffer_limit, slow)
        self.outboxes[sid] = (socket, box)
        return box

    def close_outbox(self, socket: Any, box: Outbox) -> None:
        if self.outboxes.get(socket.sid, (None, None))[1] is box:
            del self.outboxes[socket.sid]

    def _ready_box(self, sid: str) -> Outbox | None:
        """The socket's outbox when a packet may skip engine.io's queue, else None."""
        entry = self.outboxes.get(sid)
        if entry is None:
            return None
        socket, box = entry
        if socket.upgraded and not socket.closed and socket.queue.in_flight == 0:
            return box
        return None

    # --- sending ---------------------------------------------------------------------

    @staticmethod
    def encode(packets: Sequence[eio_packet.Packet]) -> list[bytes]:
        """The WebSocket frames of ``packets``, built once for any number of recipients."""
        return [frame(p.encode()) for p in packets]

    def deliver(self, sid: str, packets: Sequence[eio_packet.Packet],
                frames: Sequence[bytes]) -> None:
        """Send packets (with their prebuilt ``frames``) to one socket, without awaiting."""
        box = self._ready_box(sid)
        if box is not None:
            for data in frames:
                box.write(data)
            return
        socket = self.sockets.get(sid)
        if socket is not None and not socket.closed:
            for pkt in packets:
                socket.queue.put_nowait(pkt)

    async def send_packet(self, sid: str, pkt: eio_packet.Packet) -> None:
        box = self._ready_box(sid)
        if box is None:
            await super().send_packet(sid, pkt)
        else:
            box.write(frame(pkt.encode()))
