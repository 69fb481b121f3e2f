"""Socket.IO gateway (python-socketio ``AsyncServer`` on aiohttp, namespace ``/``).

Every client event goes through one admission step (authenticated? within the rate
limit? within the size limit?) and answers through the ack when the client asked for
one, else with an ``error`` event. Bad input never raises out of a handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
from aiohttp import web

from realtime.auth import AuthError, Identity
from realtime.bus import Message
from realtime.clock import iso
from realtime.gateways.catchup import CatchUp
from realtime.gateways.core import SessionCore, bearer, find_token
from realtime.gateways.limits import TokenBucket
from realtime.gateways.protocol import (
    ClientError,
    ResumeRequest,
    UserUpdateRequest,
    parse,
    parse_order_id,
    parse_token,
)
from realtime.gateways.session import Session
from realtime.metrics import Metrics
from realtime.requests import UserUpdateRequests
from realtime.transport.engineio import EngineConfig, EngineServer
from realtime.transport.manager import IndexedManager
from realtime.transport.socketio import SocketIOServer, ack_wanted

log = logging.getLogger(__name__)

Reply = dict[str, Any] | None
Handler = Callable[["Connection", Any], Awaitable[Reply]]


@dataclass(frozen=True, slots=True)
class SocketIOOptions:
    """The settings the Socket.IO gateway needs (see README "Configuration")."""

    engine: EngineConfig
    auth_timeout: float
    max_payload_bytes: int
    rate_per_second: float
    rate_burst: int
    disconnect_after: int


@dataclass(eq=False)
class Connection(Session):
    """A Socket.IO session: limits, timers, and replay buffering."""

    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(1, 1))
    refusals: int = 0
    auth_deadline: asyncio.TimerHandle | None = None


class SocketIOGateway:
    """Wires python-socketio events to sessions, room rules and the bus."""

    def __init__(self, *, options: SocketIOOptions, core: SessionCore,
                 user_requests: UserUpdateRequests, metrics: Metrics) -> None:
        self.options = options
        self.core = core
        self.rooms = core.rooms
        self.user_requests = user_requests
        self.metrics = metrics
        self.connections: dict[str, Connection] = {}
        #: Sockets resuming on connect: held/dropped live messages until they are caught up.
        self._catching_up: dict[str, tuple[Connection, CatchUp]] = {}
        engine = EngineServer(options.engine)
        engine.on_slow = self._on_slow
        self.sio = SocketIOServer(engine, client_manager=IndexedManager(),
                                  connect_timeout=options.auth_timeout)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        self._on("authenticate", self._authenticate, needs_auth=False)
        self._on("refresh_token", self._refresh_token)
        self._on("subscribe_order_updates", self._subscribe)
        self._on("unsubscribe_order_updates", self._unsubscribe)
        self._on("user_update_request", self._user_update)
        self._on("resume", self._resume)
        core.bus.subscribe(self.on_message)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)

    async def shutdown(self) -> None:
        """Tell every client to reconnect (to another instance), then close the transports.

        No Socket.IO DISCONNECT is sent: official clients do not reconnect after a server
        disconnect, while a closed transport makes them reconnect on their own."""
        if self.connections:
            await self.sio.emit("server_shutdown", {"reconnect": True})
        await self.sio.shutdown()

    # --- control API (realtime/control) -------------------------------------------------

    async def end(self, match: Callable[[Identity], bool], reason: str,
                  reconnect: bool) -> int:
        """End matching connections after a ``disconnected {reason, reconnect}`` event.

        ``reconnect: false`` sends a Socket.IO DISCONNECT: official clients then do not
        reconnect by themselves (reason ``io server disconnect``). ``reconnect: true`` only
        closes the transport, as a restart does, so they reconnect on their own."""
        ending = [conn for conn in self.connections.values()
                  if conn.identity is not None and match(conn.identity)]
        notice = {"reason": reason, "reconnect": reconnect}
        for conn in ending:
            await self.sio.emit("disconnected", notice, to=conn.id)
            if reconnect:
                eio_sid = self.sio.manager.eio_sid_from_sid(conn.id, "/")
                if eio_sid is not None:
                    await self.sio.engine.disconnect(eio_sid)
            else:
                await self.sio.disconnect(conn.id)
        return len(ending)

    async def move(self, user_id: str, join: Sequence[str], leave: Sequence[str]) -> int:
        """Join/leave rooms for the user's live connections; the next event follows them."""
        conns = [conn for conn in self.connections.values() if conn.user_id == user_id]
        for conn in conns:
            joined, left = self.core.move(conn, join, leave)
            for room in joined:
                await self.sio.enter_room(conn.id, room)
            for room in left:
                await self.sio.leave_room(conn.id, room)
        return len(conns)

    # --- fan-out -------------------------------------------------------------------

    async def on_message(self, message: Message) -> None:
        """Bus listener: emit to the message's rooms (each socket once)."""
        skip: list[str] | None = None
        if self._catching_up:
            skip = []
            for sid, (conn, catch_up) in list(self._catching_up.items()):
                if conn.rooms.isdisjoint(message.rooms):
                    continue
                if not catch_up.admit(message):
                    skip.append(sid)
                elif catch_up.done:
                    del self._catching_up[sid]
        rooms = message.rooms
        await self.sio.emit(message.event, message.data,
                            to=rooms[0] if len(rooms) == 1 else list(rooms), skip_sid=skip)

    async def _send_messages(self, sid: str, messages: list[Message]) -> None:
        for message in messages:
            await self.sio.emit(message.event, message.data, to=sid)

    def _on_slow(self, eio_sid: str) -> None:
        self.metrics.slow_disconnects.labels("websocket").inc()

    # --- connection lifecycle --------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        auth = auth if isinstance(auth, dict) else {}
        token = find_token(auth.get("token"), bearer(environ.get("HTTP_AUTHORIZATION")),
                           *parse_qs(environ.get("QUERY_STRING", "")).get("token", []))
        position = auth.get("position") if isinstance(auth.get("position"), str) else None
        _keep_only_client_facts(environ)
        conn = Connection(
            sid, "socketio",
            bucket=TokenBucket(self.options.rate_per_second,
                               self.options.rate_burst),
        )
        if token is None:
            # Compatibility flow: the client must emit `authenticate` within the timeout.
            loop = asyncio.get_running_loop()
            conn.auth_deadline = loop.call_later(
                self.options.auth_timeout, self._spawn, self._auth_timed_out, sid)
            self.connections[sid] = conn
            self._count(+1)
            return True
        try:
            identity = await self.core.identify(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code}) from None
        order_ids = await self._connect_orders(sid, identity, auth.get("orders"))
        self.connections[sid] = conn
        self._count(+1)
        if position:  # hold live messages from the moment the socket joins rooms
            self._catching_up[sid] = (conn, CatchUp())
        await self._adopt(conn, identity)
        for room in self.core.join_orders(conn, order_ids):
            await self.sio.enter_room(sid, room)
        if position:
            self._spawn(self._replay_on_connect, conn, position)
        return True

    async def _connect_orders(self, sid: str, identity: Identity,
                              requested: Any) -> list[str]:
        """Order rooms requested in ``auth.orders``, authorised before the socket joins them,
        so a reconnecting client's replay covers its order rooms too (gap-free)."""
        if requested is None:
            return []
        try:
            if not isinstance(requested, list):
                raise ClientError("invalid", "auth.orders must be a list of order ids")
            return await self.core.authorize_orders(identity, requested)
        except ClientError as exc:
            self.metrics.auth_failures.labels("forbidden").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": "forbidden"}) from None

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.connections.pop(sid, None)
        self._catching_up.pop(sid, None)
        if conn is None:
            return
        if conn.auth_deadline is not None:
            conn.auth_deadline.cancel()
        self.rooms.release(conn)
        self._count(-1)

    def _count(self, delta: int) -> None:
        self.metrics.connections.labels("socketio").inc(delta)

    async def _adopt(self, conn: Connection, identity: Identity) -> None:
        """Take ``identity`` for ``conn``: join/leave automatic rooms, arm the expiry timer."""
        await self._move(conn, *self.core.adopt(conn, identity))

    async def _move(self, conn: Connection, joined: list[str], left: list[str]) -> None:
        """Apply room changes decided by the core to the socket, and re-arm its expiry."""
        for room in joined:
            await self.sio.enter_room(conn.id, room)
        for room in left:
            await self.sio.leave_room(conn.id, room)
        conn.schedule_expiry(lambda: self._spawn(self._expire, conn.id))

    async def _expire(self, sid: str) -> None:
        if sid not in self.connections:
            return
        await self.sio.emit("token_expired", {"message": "token expired; reconnect with a new one"},
                            to=sid)
        await self.sio.disconnect(sid)

    async def _auth_timed_out(self, sid: str) -> None:
        conn = self.connections.get(sid)
        if conn is None or conn.identity is not None:
            return
        self.metrics.auth_failures.labels("timeout").inc()
        await self.sio.emit("auth_error", {"message": "authentication timed out",
                                           "code": "invalid_token"}, to=sid)
        await self.sio.disconnect(sid)

    async def _replay_on_connect(self, conn: Connection, position: str) -> None:
        """Replay missed events before any live one, then release the held-back live ones."""
        entry = self._catching_up.get(conn.id)
        if entry is None:  # disconnected meanwhile
            return
        catch_up = entry[1]
        replay = await self.core.replay(conn, position, catch_up)
        if self._catching_up.get(conn.id) is not entry:  # disconnected meanwhile
            return
        if catch_up.done:
            del self._catching_up[conn.id]
        await self._send_messages(conn.id, replay.messages)
        await self.sio.emit("recovered", {"recovered": replay.recovered}, to=conn.id)

    def _spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        task = asyncio.ensure_future(func(*args))
        _background.add(task)
        task.add_done_callback(_background.discard)

    # --- client events ---------------------------------------------------------------

    def _on(self, event: str, handler: Handler, *, needs_auth: bool = True) -> None:
        async def dispatch(sid: str, *args: Any) -> Reply:
            conn = self.connections.get(sid)
            if conn is None:
                return None
            try:
                await self._admit(conn, args, needs_auth)
                payload = args[0] if args else None
                return await handler(conn, payload)
            except ClientError as exc:
                self.metrics.client_refusals.labels(exc.code).inc()
                return await self._refuse(conn, event, exc)

        self.sio.on(event, dispatch)

    async def _admit(self, conn: Connection, args: tuple[Any, ...], needs_auth: bool) -> None:
        if not conn.bucket.take():
            conn.refusals += 1
            if conn.refusals >= self.options.disconnect_after:
                self._spawn(self._kick, conn.id, "rate_limited",
                            "too many events; disconnected")
            raise ClientError("rate_limited", "too many events; slow down")
        conn.refusals = 0
        if len(args) > 1:
            raise ClientError("invalid", "send one payload argument")
        size = len(orjson.dumps(args, default=str))
        if size > self.options.max_payload_bytes:
            raise ClientError("payload_too_large",
                              f"payload is {size} bytes; limit {self.options.max_payload_bytes}")
        if needs_auth and conn.identity is None:
            raise ClientError("unauthenticated", "authenticate first")

    async def _refuse(self, conn: Connection, event: str, exc: ClientError) -> Reply:
        """One refusal shape for the ack and the ``error`` event: ``error`` (the SPEC's ack
        field) and ``code`` (every server event's field) carry the same reason."""
        answer: dict[str, Any] = {"ok": False, "event": event, "error": exc.code,
                                  "code": exc.code, "message": exc.message, **exc.extra}
        # `user_update_request` always answers with events (SPEC); others use the ack if any.
        if not ack_wanted() or event == "user_update_request":
            await self.sio.emit("error", answer, to=conn.id)
        return answer

    async def _kick(self, sid: str, code: str, message: str) -> None:
        if sid in self.connections:
            await self.sio.emit("error", {"code": code, "message": message}, to=sid)
            await self.sio.disconnect(sid)

    async def _on_unknown(self, event: str, sid: str, *args: Any) -> Reply:
        conn = self.connections.get(sid)
        if conn is None:
            return None
        exc = ClientError("unknown_event", f"unknown event {event!r}")
        try:
            await self._admit(conn, args[:1], needs_auth=False)
        except ClientError as refused:
            exc = refused
        self.metrics.client_refusals.labels(exc.code).inc()
        return await self._refuse(conn, event, exc)

    async def _authenticate(self, conn: Connection, payload: Any) -> Reply:
        if conn.identity is not None:
            parse_token(payload)  # still validate: a malformed payload gets a clear error
            await self.sio.emit("authenticated", {"userId": conn.identity.user_id}, to=conn.id)
            return {"ok": True, "userId": conn.identity.user_id}
        try:
            token = parse_token(payload)
        except ClientError as exc:
            self.metrics.auth_failures.labels("invalid_token").inc()
            return self._fail_authentication(conn, AuthError("invalid_token", exc.message))
        try:
            identity = await self.core.identify(token)
        except AuthError as exc:
            return self._fail_authentication(conn, exc)
        if conn.auth_deadline is not None:
            conn.auth_deadline.cancel()
            conn.auth_deadline = None
        await self._adopt(conn, identity)
        await self.sio.emit("authenticated", {"userId": identity.user_id}, to=conn.id)
        return {"ok": True, "userId": identity.user_id}

    def _fail_authentication(self, conn: Connection, exc: AuthError) -> Reply:
        self._spawn(self._auth_failed, conn.id, exc.message, exc.code)
        return {"ok": False, "event": "authenticate", "error": exc.code, "code": exc.code,
                "message": exc.message}

    async def _auth_failed(self, sid: str, message: str, code: str) -> None:
        await self.sio.emit("auth_error", {"message": message, "code": code}, to=sid)
        await asyncio.sleep(0.05)  # let the ack (if any) go out first
        await self.sio.disconnect(sid)

    async def _refresh_token(self, conn: Connection, payload: Any) -> Reply:
        try:
            refreshed = await self.core.refresh(conn, parse_token(payload))
        except AuthError as exc:
            raise ClientError(exc.code, exc.message) from None
        await self._move(conn, refreshed.joined, refreshed.left)
        return {"ok": True, "expiresAt": iso(refreshed.identity.expires_at),
                "leftOrders": refreshed.left_orders}

    async def _subscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        room, snapshot = await self.core.subscribe(conn, order_id)
        await self.sio.enter_room(conn.id, room)
        await self.sio.emit("order_status", snapshot, to=conn.id)
        return {"ok": True, "orderId": order_id, "status": snapshot["status"]}

    async def _unsubscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        room = self.core.unsubscribe(conn, order_id)
        if room is not None:
            await self.sio.leave_room(conn.id, room)
        return {"ok": True, "orderId": order_id}

    async def _user_update(self, conn: Connection, payload: Any) -> Reply:
        operation = payload.get("operationId") if isinstance(payload, dict) else None
        try:
            request = parse(UserUpdateRequest, payload)
            assert conn.identity is not None
            await self.user_requests.submit(conn.identity, conn.id, request)
        except ClientError as exc:
            exc.extra["operationId"] = operation if isinstance(operation, str) else None
            raise
        accepted = {"operationId": request.operationId, "status": "processing"}
        await self.sio.emit("update_accepted", accepted, to=conn.id)
        return {"ok": True, **accepted}

    async def _resume(self, conn: Connection, payload: Any) -> Reply:
        request = parse(ResumeRequest, payload)
        replay = await self.core.replay(conn, request.position)
        await self._send_messages(conn.id, replay.messages)
        answer = {"recovered": replay.recovered}
        if not ack_wanted():
            await self.sio.emit("recovered", answer, to=conn.id)
        return {"ok": True, **answer, "replayed": len(replay.messages)}


_background: set[asyncio.Future[Any]] = set()


#: What python-socketio keeps of a connection's request (its ``environ``) after connect:
#: enough for the Admin UI's client view, without credentials (``Authorization``,
#: cookies, ``?token=``) and without the rest of the headers (~1 KB per connection).
_ENVIRON_KEPT = ("REMOTE_ADDR", "PATH_INFO", "wsgi.url_scheme", "HTTP_USER_AGENT",
                 "HTTP_ORIGIN", "HTTP_X_FORWARDED_FOR")


def _keep_only_client_facts(environ: dict[str, Any]) -> None:
    kept = {key: environ[key] for key in _ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)
