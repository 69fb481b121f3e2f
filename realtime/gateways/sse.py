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
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import orjson
from aiohttp import web

from realtime.auth import AuthError, TokenVerifier
from realtime.bus import FanoutBus, Message
from realtime.gateways.catchup import CatchUp
from realtime.gateways.protocol import ClientError, parse_order_id
from realtime.gateways.session import RoomPolicy, Session
from realtime.http.errors import ApiError, bearer_token
from realtime.metrics import Metrics
from realtime.settings import Settings

log = logging.getLogger(__name__)

RETRY_MS = 2000


def frame(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE frame; ``data`` is single-line JSON."""
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
    def __init__(self, *, settings: Settings, verifier: TokenVerifier, rooms: RoomPolicy,
                 bus: FanoutBus, metrics: Metrics) -> None:
        self.settings = settings
        self.verifier = verifier
        self.rooms = rooms
        self.bus = bus
        self.metrics = metrics
        self.by_room: dict[str, set[Stream]] = {}
        self.streams: set[Stream] = set()
        self._bytes = metrics.sse_bytes
        bus.subscribe(self.on_message)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/sse", self.handle)

    # --- fan-out ---------------------------------------------------------------------

    async def on_message(self, message: Message) -> None:
        """Queue one shared frame to every local stream in the message's rooms."""
        recipients: set[Stream] = set()
        for room in message.rooms:
            members = self.by_room.get(room)
            if members:
                recipients |= members
        if not recipients:
            return
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
        if stream.buffered > self.settings.sse_buffer_bytes:
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

    # --- one stream ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = (bearer_token(request) or request.query.get("token")
                 or request.cookies.get(self.settings.sse_cookie_name))
        if not token:
            raise ApiError(401, "invalid_token",
                           "token required (Authorization, ?token= or cookie)")
        try:
            identity = await self.verifier.verify(token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.code).inc()
            raise ApiError(401, exc.code, exc.message) from None
        stream = Stream(uuid4().hex, "sse")
        self.rooms.identity_rooms(stream, identity)
        try:
            for raw in filter(None, request.query.get("orders", "").split(",")):
                order_id = parse_order_id(raw.strip())
                await self.rooms.authorize_order(stream, order_id)
                self.rooms.add_order(stream, order_id)
        except ClientError as exc:
            self.rooms.release(stream)
            status = 400 if exc.code == "invalid" else 403
            raise ApiError(status, exc.code, exc.message) from None

        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no", **self._cors(request)})
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

    async def _resume(self, stream: Stream, position: str) -> None:
        try:
            replay = await self.bus.replay(stream.rooms, position)
            messages, recovered = replay.messages, replay.recovered
        except Exception:
            log.warning("sse replay failed", exc_info=True)
            messages, recovered = [], False
        assert stream.catch_up is not None
        held = stream.catch_up.finish(messages)
        if stream.catch_up.done:
            stream.catch_up = None
        for message in messages + held:
            self._queue(stream, frame(message.event, message.body, message.position))
        self._queue(stream, frame("recovered", orjson.dumps({"recovered": recovered})))

    async def _pump(self, stream: Stream, response: web.StreamResponse) -> None:
        heartbeat = self.settings.sse_heartbeat_seconds
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
            members = self.by_room.get(room)
            if members is not None:
                members.discard(stream)
                if not members:
                    del self.by_room[room]
        self.rooms.release(stream)
        self.metrics.connections.labels("sse").dec()
        with contextlib.suppress(Exception):
            stream.outbox.clear()

    def _cors(self, request: web.Request) -> dict[str, str]:
        """Credentials are allowed for listed origins only; never ``*`` with credentials."""
        origin = request.headers.get("Origin")
        if origin and origin in self.settings.cors_origins:
            return {"Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
        return {}
