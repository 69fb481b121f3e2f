"""Server-Sent Events gateway: ``GET /sse`` streams the same rooms and events as Socket.IO.

Each bus message is encoded into one SSE frame once and the same bytes are queued to
every recipient. Every connection has a bounded buffer drained by its own writer; a
client that cannot keep up is cut off (it resumes with ``Last-Event-ID``) instead of
growing server memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import orjson
from aiohttp import web

from realtime.auth import AuthError, Identity
from realtime.bus import Message
from realtime.gateways.catchup import CatchUp
from realtime.gateways.core import SessionCore, find_token
from realtime.gateways.protocol import ClientError
from realtime.gateways.session import Session
from realtime.http.cors import CorsPolicy
from realtime.http.errors import ApiError, bearer_token, error_response
from realtime.metrics import Metrics

log = logging.getLogger(__name__)

RETRY_MS = 2000
_LINE_BREAKS = str.maketrans("", "", "\r\n")


@dataclass(frozen=True, slots=True)
class SSEOptions:
    """The settings the SSE gateway needs (see README "Configuration")."""

    buffer_bytes: int
    heartbeat_seconds: float
    cookie_name: str
    cors: CorsPolicy


def frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE frame; ``data`` is single-line JSON.

    Line breaks are dropped from ``event`` and ``id`` so that no name can inject fields or
    frames (names are validated at ingest already; this is defence in depth).
    """
    if "\n" in event or "\r" in event:
        event = event.translate(_LINE_BREAKS)
    if event_id and ("\n" in event_id or "\r" in event_id):
        event_id = event_id.translate(_LINE_BREAKS)
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


@dataclass(eq=False)
class Stream(Session):
    """An open event stream: a byte-bounded outbox drained by the handler."""

    outbox: deque[bytes] = field(default_factory=deque)
    buffered: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    closing: str | None = None
    #: Set while a resume replay is written and until the live stream passes it.
    catch_up: CatchUp | None = None
    transport: Any = None


class SSEGateway:
    def __init__(self, *, options: SSEOptions, core: SessionCore, metrics: Metrics) -> None:
        self.options = options
        self.core = core
        self.rooms = core.rooms
        self.metrics = metrics
        self.by_room: dict[str, set[Stream]] = {}
        self.streams: set[Stream] = set()
        self._bytes = metrics.sse_bytes
        core.bus.subscribe(self.on_messages)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sse", self.handle)
        app.router.add_route("OPTIONS", "/sse", self.preflight)

    # --- fan-out ---------------------------------------------------------------------

    async def on_messages(self, messages: list[Message]) -> None:
        """Bus listener: queue one shared frame per message to every local stream in its
        rooms."""
        by_room = self.by_room
        if not by_room:
            return
        for message in messages:
            recipients: set[Stream] = set()
            for room in message.rooms:
                members = by_room.get(room)
                if members:
                    recipients |= members
            if not recipients:
                continue
            data = frame(message.event, message.body, message.position)
            for stream in recipients:
                if stream.catch_up is None:
                    self._queue(stream, data)
                elif stream.catch_up.admit(message):
                    self._queue(stream, data)
                    if stream.catch_up.done:
                        stream.catch_up = None

    def _queue(self, stream: Stream, data: bytes) -> None:
        if stream.closing:
            return
        stream.outbox.append(data)
        stream.buffered += len(data)
        # One frame always fits (an event may be as large as the buffer); more is a backlog.
        if stream.buffered > self.options.buffer_bytes and len(stream.outbox) > 1:
            self.metrics.slow_disconnects.labels("sse").inc()
            log.info("sse client %s too slow (%d bytes buffered); disconnecting",
                     stream.id, stream.buffered, extra={"connectionId": stream.id})
            self._close(stream, "slow_client")
            if stream.transport is not None:
                stream.transport.abort()  # its socket is not draining; do not wait for it
        stream.wakeup.set()

    def _close(self, stream: Stream, reason: str) -> None:
        stream.closing = stream.closing or reason
        stream.wakeup.set()

    async def close_all(self, reason: str = "server_restart") -> None:
        """Ask every stream to end with a reconnect hint (graceful shutdown, tests)."""
        for stream in list(self.streams):
            self._queue(stream, frame("reconnect", orjson.dumps({"reason": reason})))
            self._close(stream, reason)

    # --- control API (realtime/control) -------------------------------------------------

    async def end(self, match: Callable[[Identity], bool], reason: str,
                  reconnect: bool) -> int:
        """End matching streams with a final ``disconnected {reason, reconnect}`` frame
        (EventSource reconnects by itself: a client told ``reconnect: false`` must call
        ``close()``; a revoked token is refused with 401 anyway)."""
        ending = [stream for stream in self.streams
                  if stream.identity is not None and match(stream.identity) and not stream.closing]
        data = orjson.dumps({"reason": reason, "reconnect": reconnect})
        for stream in ending:
            self._queue(stream, frame("disconnected", data))
            self._close(stream, reason)
        return len(ending)

    async def move(self, user_id: str, join: Sequence[str], leave: Sequence[str]) -> int:
        """Join/leave rooms for the user's open streams (no replay)."""
        streams = [stream for stream in self.streams
                   if stream.user_id == user_id and not stream.closing]
        for stream in streams:
            joined, left = self.core.move(stream, join, leave)
            for room in joined:
                self.by_room.setdefault(room, set()).add(stream)
            for room in left:
                self._leave(stream, room)
        return len(streams)

    def _leave(self, stream: Stream, room: str) -> None:
        members = self.by_room.get(room)
        if members is not None:
            members.discard(stream)
            if not members:
                del self.by_room[room]

    # --- one stream ------------------------------------------------------------------

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204,
                            headers=self.options.cors.preflight(request.headers.get("Origin")))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        cors = self.options.cors.headers(request.headers.get("Origin"))
        try:
            stream = await self._open(request)
        except ApiError as exc:  # a refusal is readable by an allowed origin too
            refused = error_response(exc.status, exc.code, exc.message, exc.details)
            refused.headers.update(cors)
            return refused
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", **cors})
        await response.prepare(request)
        stream.transport = request.transport
        resume_from = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
        if resume_from:
            stream.catch_up = CatchUp()
        self._register(stream)
        stream.schedule_expiry(lambda: self._expired(stream))
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            if resume_from:
                await self._resume(stream, resume_from)
            await self._pump(stream, response)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._unregister(stream)
        return response

    async def _open(self, request: web.Request) -> Stream:
        """Authenticate and join the requested rooms, or raise :class:`ApiError`."""
        token = find_token(bearer_token(request), request.query.get("token"),
                           request.cookies.get(self.options.cookie_name))
        if token is None:
            raise ApiError(401, "invalid_token",
                           "token required (Authorization, ?token= or cookie)")
        try:
            identity = await self.core.identify(token)
        except AuthError as exc:
            raise ApiError(401, exc.code, exc.message) from None
        requested = [raw.strip() for raw in request.query.get("orders", "").split(",")
                     if raw.strip()]
        try:
            order_ids = await self.core.authorize_orders(identity, requested)
        except ClientError as exc:
            status = {"invalid": 400, "unavailable": 503}.get(exc.code, 403)
            raise ApiError(status, exc.code, exc.message) from None
        stream = Stream(uuid4().hex, "sse")
        self.core.adopt(stream, identity)
        self.core.join_orders(stream, order_ids)
        return stream

    async def _resume(self, stream: Stream, position: str) -> None:
        catch_up = stream.catch_up
        replay = await self.core.replay(stream, position, catch_up)
        if catch_up is not None and catch_up.done:
            stream.catch_up = None
        for message in replay.messages:
            self._queue(stream, frame(message.event, message.body, message.position))
        self._queue(stream, frame("recovered", orjson.dumps({"recovered": replay.recovered})))

    async def _pump(self, stream: Stream, response: web.StreamResponse) -> None:
        heartbeat = self.options.heartbeat_seconds
        while True:
            if not stream.outbox:
                if stream.closing:
                    return
                stream.wakeup.clear()
                try:
                    async with asyncio.timeout(heartbeat):
                        await stream.wakeup.wait()
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
            if stream.closing == "slow_client":
                return
            chunk = b"".join(stream.outbox)
            stream.outbox.clear()
            stream.buffered = 0
            await response.write(chunk)
            self._bytes.inc(len(chunk))

    def _expired(self, stream: Stream) -> None:
        self._queue(stream, frame("token_expired", b'{"message":"token expired"}'))
        self._close(stream, "token_expired")

    def _register(self, stream: Stream) -> None:
        self.streams.add(stream)
        for room in stream.rooms:
            self.by_room.setdefault(room, set()).add(stream)
        self.metrics.connections.labels("sse").inc()

    def _unregister(self, stream: Stream) -> None:
        if stream not in self.streams:
            return
        self.streams.discard(stream)
        for room in stream.rooms:
            self._leave(stream, room)
        self.rooms.release(stream)
        self.metrics.connections.labels("sse").dec()
        with contextlib.suppress(Exception):
            stream.outbox.clear()
