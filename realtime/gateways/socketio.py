"""Socket.IO gateway (python-socketio ``AsyncServer`` on aiohttp, namespace ``/``).

Every client event goes through one admission step (authenticated? within the rate
limit? within the size limit?) and answers through the ack when the client asked for
one, else with an ``error`` event. Bad input never raises out of a handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
from aiohttp import web

from realtime.auth import AuthError, Identity, TokenVerifier
from realtime.bus import FanoutBus, Message
from realtime.clock import iso
from realtime.gateways.catchup import CatchUp
from realtime.gateways.limits import TokenBucket
from realtime.gateways.protocol import (
    ClientError,
    ResumeRequest,
    UserUpdateRequest,
    parse,
    parse_order_id,
    parse_token,
)
from realtime.gateways.session import RoomPolicy, Session, order_snapshot
from realtime.metrics import Metrics
from realtime.requests import UserUpdateRequests
from realtime.settings import Settings
from realtime.transport.engineio import EngineConfig, EngineServer
from realtime.transport.manager import IndexedManager
from realtime.transport.socketio import SocketIOServer, ack_wanted

log = logging.getLogger(__name__)

Reply = dict[str, Any] | None
Handler = Callable[["Connection", Any], Awaitable[Reply]]


@dataclass(eq=False)
class Connection(Session):
    """A Socket.IO session: limits, timers, and replay buffering."""

    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(1, 1))
    refusals: int = 0
    auth_deadline: asyncio.TimerHandle | None = None


class SocketIOGateway:
    """Wires python-socketio events to sessions, room rules and the bus."""

    def __init__(self, *, settings: Settings, verifier: TokenVerifier, rooms: RoomPolicy,
                 bus: FanoutBus, user_requests: UserUpdateRequests, metrics: Metrics) -> None:
        self.settings = settings
        self.verifier = verifier
        self.rooms = rooms
        self.bus = bus
        self.user_requests = user_requests
        self.metrics = metrics
        self.connections: dict[str, Connection] = {}
        #: Sockets resuming on connect: held/dropped live messages until they are caught up.
        self._catching_up: dict[str, tuple[Connection, CatchUp]] = {}
        engine = EngineServer(EngineConfig(
            ping_interval=settings.ping_interval,
            ping_timeout=settings.ping_timeout,
            max_payload=max(1_000_000, 4 * settings.max_payload_bytes),
            buffer_limit=settings.ws_buffer_bytes,
            cors_origins=settings.cors_origins,
        ))
        engine.on_slow = self._on_slow
        self.sio = SocketIOServer(engine, client_manager=IndexedManager(),
                                  connect_timeout=settings.auth_timeout)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        self._on("authenticate", self._authenticate, needs_auth=False)
        self._on("refresh_token", self._refresh_token)
        self._on("subscribe_order_updates", self._subscribe)
        self._on("unsubscribe_order_updates", self._unsubscribe)
        self._on("user_update_request", self._user_update)
        self._on("resume", self._resume)
        bus.subscribe(self.on_message)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)

    async def shutdown(self) -> None:
        """Tell every client to reconnect (to another instance), then close the transports.

        No Socket.IO DISCONNECT is sent: official clients do not reconnect after a server
        disconnect, while a closed transport makes them reconnect on their own."""
        if self.connections:
            await self.sio.emit("server_shutdown", {"reconnect": True})
        await self.sio.shutdown()

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
        token, position = _credentials(environ, auth)
        _keep_only_client_facts(environ)
        conn = Connection(
            sid, "socketio",
            bucket=TokenBucket(self.settings.rate_limit_per_second,
                               self.settings.rate_limit_burst),
        )
        if token is None:
            # Compatibility flow: the client must emit `authenticate` within the timeout.
            loop = asyncio.get_running_loop()
            conn.auth_deadline = loop.call_later(
                self.settings.auth_timeout, self._spawn, self._auth_timed_out, sid)
            self.connections[sid] = conn
            self._count(+1)
            return True
        try:
            identity = await self.verifier.verify(token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.code).inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code}) from None
        order_ids = await self._connect_orders(sid, identity, auth)
        self.connections[sid] = conn
        self._count(+1)
        if position is not None:  # hold live messages from the moment the socket joins rooms
            self._catching_up[sid] = (conn, CatchUp())
        await self._adopt(conn, identity)
        for order_id in order_ids:
            await self.sio.enter_room(sid, self.rooms.add_order(conn, order_id))
        if position is not None:
            self._spawn(self._replay_on_connect, conn, position)
        return True

    async def _connect_orders(self, sid: str, identity: Identity, auth: Any) -> list[str]:
        """Order rooms requested in ``auth.orders``, authorised before the socket joins them,
        so a reconnecting client's replay covers its order rooms too (gap-free)."""
        requested = auth.get("orders") if isinstance(auth, dict) else None
        if requested is None:
            return []
        try:
            if not isinstance(requested, list) or len(requested) > self.rooms.max_orders:
                raise ClientError("invalid", "auth.orders must be a list of order ids "
                                             f"(at most {self.rooms.max_orders})")
            order_ids = list(dict.fromkeys(parse_order_id(o) for o in requested))
            probe = Session(sid, "socketio", identity=identity)
            for order_id in order_ids:
                await self.rooms.authorize_order(probe, order_id)
        except ClientError as exc:
            self.metrics.auth_failures.labels("forbidden").inc()
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": "forbidden"}) from None
        return order_ids

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
        joined, left = self.rooms.identity_rooms(conn, identity)
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
        try:
            replay = await self.bus.replay(conn.rooms, position)
        except Exception:
            log.warning("replay failed for %s", conn.id, exc_info=True)
            replay = None
        replayed = replay.messages if replay else []
        await self._send_messages(conn.id, replayed)
        entry = self._catching_up.get(conn.id)
        if entry is None:  # disconnected meanwhile
            return
        catch_up = entry[1]
        held = catch_up.finish(replayed)
        if catch_up.done:
            del self._catching_up[conn.id]
        await self._send_messages(conn.id, held)
        await self.sio.emit("recovered", {"recovered": bool(replay and replay.recovered)},
                            to=conn.id)

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
            if conn.refusals >= self.settings.rate_limit_disconnect_after:
                self._spawn(self._kick, conn.id, "rate_limited",
                            "too many events; disconnected")
            raise ClientError("rate_limited", "too many events; slow down")
        conn.refusals = 0
        if len(args) > 1:
            raise ClientError("invalid", "send one payload argument")
        size = len(orjson.dumps(args, default=str))
        if size > self.settings.max_payload_bytes:
            raise ClientError("payload_too_large",
                              f"payload is {size} bytes; limit {self.settings.max_payload_bytes}")
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
            identity = await self.verifier.verify(parse_token(payload))
        except (AuthError, ClientError) as exc:
            code = exc.code if isinstance(exc, AuthError) else "invalid_token"
            self.metrics.auth_failures.labels(code).inc()
            self._spawn(self._auth_failed, conn.id, exc.message, code)
            return {"ok": False, "error": code, "message": exc.message}
        if conn.auth_deadline is not None:
            conn.auth_deadline.cancel()
            conn.auth_deadline = None
        await self._adopt(conn, identity)
        await self.sio.emit("authenticated", {"userId": identity.user_id}, to=conn.id)
        return {"ok": True, "userId": identity.user_id}

    async def _auth_failed(self, sid: str, message: str, code: str) -> None:
        await self.sio.emit("auth_error", {"message": message, "code": code}, to=sid)
        await asyncio.sleep(0.05)  # let the ack (if any) go out first
        await self.sio.disconnect(sid)

    async def _refresh_token(self, conn: Connection, payload: Any) -> Reply:
        try:
            identity = await self.verifier.verify(parse_token(payload))
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.code).inc()
            raise ClientError(exc.code, exc.message) from None
        if conn.identity is not None and identity.user_id != conn.identity.user_id:
            raise ClientError("forbidden", "the new token is for another user")
        await self._adopt(conn, identity)
        left = await self._recheck_orders(conn)
        return {"ok": True, "expiresAt": iso(identity.expires_at), "leftOrders": left}

    async def _recheck_orders(self, conn: Connection) -> list[str]:
        """A refreshed token may carry fewer rights: leave the order rooms it no longer allows."""
        left: list[str] = []
        for order_id in sorted(conn.orders):
            try:
                await self.rooms.authorize_order(conn, order_id)
            except ClientError:
                room = self.rooms.remove_order(conn, order_id)
                if room is not None:
                    await self.sio.leave_room(conn.id, room)
                    left.append(order_id)
        return left

    async def _subscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        info = await self.rooms.authorize_order(conn, order_id)
        room = self.rooms.add_order(conn, order_id)
        await self.sio.enter_room(conn.id, room)
        snapshot = order_snapshot(order_id, info)
        await self.sio.emit("order_status", snapshot, to=conn.id)
        return {"ok": True, "orderId": order_id, "status": snapshot["status"]}

    async def _unsubscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        room = self.rooms.remove_order(conn, order_id)
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
        replay = await self.bus.replay(conn.rooms, request.position)
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


def _credentials(environ: dict[str, Any], auth: Any) -> tuple[str | None, str | None]:
    """Token and resume position from ``auth``, the ``Authorization`` header or ``?token=``."""
    token: str | None = None
    position: str | None = None
    if isinstance(auth, dict):
        value = auth.get("token")
        token = value if isinstance(value, str) and value else None
        pos = auth.get("position")
        position = pos if isinstance(pos, str) and pos else None
    if token is None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if isinstance(header, str) and header[:7].lower() == "bearer ":
            token = header[7:].strip() or None
    if token is None:
        values = parse_qs(environ.get("QUERY_STRING", "")).get("token")
        token = values[0] if values else None
    return token, position
