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
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import engineio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_socket import AsyncSocket

from realtime.gateways.lean_ws import Detached, take_over
from realtime.gateways.teardown import TeardownThrottle
from realtime.gateways.websocket import FastWebSocket, Flusher, Outbox, frame

log = logging.getLogger(__name__)

#: Running lean WebSocket sessions (a reference keeps each task alive).
_sessions: set[asyncio.Future[None]] = set()

#: Packets per long-polling response (python-engineio's client decodes at most 16).
MAX_BATCH = 16


class _SocketQueue:
    """engine.io's per-socket send queue: lean, counting packets not yet handed on.

    Most sockets are idle WebSocket ones, so this holds a list and at most a few waiters
    instead of an ``asyncio.Queue`` (four deques, an event: ~3 KB per socket). Once a
    WebSocket session runs in :meth:`FastEngine.run_websocket`, a *sink* is attached and
    packets go straight to the socket's outbox in the order they are put. Without one,
    engine.io's writer (or a long-polling request) takes them: ``in_flight`` counts packets
    put and not yet marked done, so ``in_flight == 0`` means nothing unsent is queued.
    One ``get`` and the ``get_nowait`` calls after it (one long-polling response) take at
    most :data:`MAX_BATCH` packets: python-engineio's client rejects larger payloads.
    """

    __slots__ = ("_batch", "_items", "_joiners", "_waiters", "in_flight", "sink")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._joiners: list[asyncio.Future[None]] = []
        self._batch = 0
        self.in_flight = 0
        self.sink: Callable[[Any], None] | None = None

    def attach(self, sink: Callable[[Any], None]) -> None:
        """Hand every queued and future packet to ``sink`` (in order) instead of queueing."""
        items, self._items = self._items, []
        for item in items:
            self.task_done()
            sink(item)
        self.sink = sink

    def put_nowait(self, item: Any) -> None:
        if self.sink is not None:
            self.sink(item)
            return
        self._items.append(item)
        self.in_flight += 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def put(self, item: Any) -> None:
        self.put_nowait(item)

    async def get(self) -> Any:
        self._batch = 1  # this packet starts a new batch
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif self._items:  # woken and cancelled at once: pass the wake-up on
                    self._wake_one()
                raise
        return self._items.pop(0)

    def get_nowait(self) -> Any:
        if self._batch >= MAX_BATCH or not self._items:
            raise asyncio.QueueEmpty
        self._batch += 1
        return self._items.pop(0)

    def task_done(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            joiners, self._joiners = self._joiners, []
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self.in_flight:
            joiner = asyncio.get_running_loop().create_future()
            self._joiners.append(joiner)
            await joiner


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
        return _SocketQueue()

    # --- lean WebSocket sessions --------------------------------------------------------

    def start_lean_session(self, socket: Any, ws: FastWebSocket,
                           request: web.BaseRequest) -> web.StreamResponse:
        """Take a WebSocket-only session over from aiohttp and run it in its own task."""
        conn = take_over(request, self.max_http_buffer_size, self.teardown)
        if conn is None:
            return web.Response(status=400, text="invalid WebSocket upgrade")
        ws.conn = conn
        box = ws.box = self.open_outbox(socket, conn.transport)
        session = asyncio.ensure_future(self._lean_session(socket, ws, box))
        _sessions.add(session)
        session.add_done_callback(_sessions.discard)
        return Detached()

    async def _lean_session(self, socket: Any, ws: FastWebSocket, box: Outbox) -> None:
        try:
            await self.run_websocket(socket, ws, box)
        finally:
            self.close_outbox(socket, box)
            await ws.close()  # flushes the outbox first

    async def run_websocket(self, socket: Any, ws: FastWebSocket, box: Outbox) -> None:
        """engine.io's loop for a WebSocket-only session, without its per-socket tasks.

        engine.io keeps a writer task (plus a task inside its ``wait_for``) and wraps each
        read in another task; idle, that is ~3 tasks per socket. Here packets queued for
        the socket go straight to its outbox, and the read loop is this coroutine alone (a
        client that stops answering pings is cut off by :meth:`_check_pong`)."""
        socket.connected = socket.upgraded = True
        socket.queue.attach(lambda pkt: None if pkt is None else box.write(frame(pkt.encode())))
        while True:
            try:
                data = await ws.wait()
            except Exception:  # closed or too large: the session ends
                break
            try:
                await socket.receive(eio_packet.Packet(encoded_packet=data))
            except engineio.exceptions.UnknownPacketError:
                pass
            except engineio.exceptions.SocketIsClosedError:
                break
            except Exception:
                log.exception("engine.io receive error (%s)", socket.sid)
        await socket.close(wait=False, abort=True, reason=self.reason.TRANSPORT_CLOSE)

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        """engine.io starts a task per socket that sleeps until its next ping; a timer
        does the same for a fraction of the memory."""
        if getattr(target, "__func__", None) is AsyncSocket._send_ping:
            return asyncio.get_running_loop().call_later(
                self.ping_interval, self._ping, target.__self__)
        return super().start_background_task(target, *args, **kwargs)

    def _ping(self, socket: Any) -> None:
        if not socket.closing and not socket.closed:
            sent = socket.last_ping = time.time()
            socket.queue.put_nowait(eio_packet.Packet(eio_packet.PING))
            asyncio.get_running_loop().call_later(
                self.ping_timeout, self._check_pong, socket, sent)

    def _check_pong(self, socket: Any, sent: float) -> None:
        """Cut off a WebSocket whose client did not answer the ping sent at ``sent``
        (engine.io then sees the transport close; long-polling has its own check)."""
        entry = self.outboxes.get(socket.sid)
        if socket.last_ping == sent and entry is not None and entry[0] is socket:
            entry[1].transport.abort()

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

    def deliver(self, eio_sids: Iterable[str], packets: Sequence[eio_packet.Packet],
                frames: Sequence[bytes]) -> None:
        """Send packets (with their prebuilt ``frames``) to each socket, without awaiting.

        The per-recipient loop of every broadcast, so the ready check is inlined."""
        outboxes = self.outboxes
        single = frames[0] if len(frames) == 1 else None
        for sid in eio_sids:
            entry = outboxes.get(sid)
            if entry is not None:
                socket, box = entry
                if socket.upgraded and not socket.closed and not socket.queue.in_flight:
                    if single is not None:
                        box.write(single)
                    else:
                        for data in frames:
                            box.write(data)
                    continue
            self._enqueue(sid, packets)

    def _enqueue(self, sid: str, packets: Sequence[eio_packet.Packet]) -> None:
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
