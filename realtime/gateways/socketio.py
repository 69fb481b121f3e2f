"""Socket.IO gateway (python-socketio ``AsyncServer`` on aiohttp, namespace ``/``).

Every client event goes through one admission step (authenticated? within the rate
limit? within the size limit?) and answers through the ack when the client asked for
one, else with an ``error`` event. Bad input never raises out of a handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
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
from realtime.gateways.core import Replay, SessionCore, bearer, find_token
from realtime.gateways.limits import TokenBucket
from realtime.gateways.protocol import (
    ClientError,
    ResumeRequest,
    UserUpdateRequest,
    parse,
    parse_order_id,
    parse_token,
)
from realtime.gateways.recovery import Recovery
from realtime.gateways.session import Session
from realtime.metrics import Metrics
from realtime.requests import UserUpdateRequests
from realtime.state.sessions import MemorySessions, SessionRecord
from realtime.transport.engineio import EngineConfig, EngineServer
from realtime.transport.manager import IndexedManager, Run
from realtime.transport.payload import event_frame
from realtime.transport.socketio import (
    ConnectAnswer,
    ConnectRequest,
    SocketIOServer,
    ack_wanted,
)

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


@dataclass(frozen=True, slots=True)
class _Recovering:
    """A session being recovered: its record, its order rooms still allowed, what it missed
    (read before the sid is taken) and where that read started."""

    record: SessionRecord
    orders: list[str]
    replay: Replay
    start: str | None


@dataclass(eq=False)
class Connection(Session):
    """A Socket.IO session: limits, timers, and what its recovery restores."""

    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(1, 1))
    refusals: int = 0
    auth_deadline: asyncio.TimerHandle | None = None
    #: Private session id of connection-state recovery (``None``: recovery is off).
    pid: str | None = None
    #: The bus position when the session began (see :class:`SessionRecord`).
    since: str | None = None
    #: Rooms a backend made it join (control API), restored with it.
    granted: frozenset[str] = frozenset()  # shared while empty: idle connections stay small
    #: Ended by a Socket.IO DISCONNECT (either side): not recoverable.
    ended: bool = False

    def record(self) -> SessionRecord | None:
        if self.pid is None or self.identity is None:
            return None
        return SessionRecord(self.id, self.identity.user_id, tuple(sorted(self.orders)),
                             tuple(sorted(self.granted)), self.since)


class SocketIOGateway:
    """Wires python-socketio events to sessions, room rules and the bus."""

    def __init__(self, *, options: SocketIOOptions, core: SessionCore,
                 user_requests: UserUpdateRequests, metrics: Metrics,
                 recovery: Recovery | None = None) -> None:
        self.options = options
        self.core = core
        self.recovery = recovery or Recovery(MemorySessions(), 0.0, _no_head)
        self.recovery.live = self._live_records
        self._closing = False
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
        self.sio.on_connect("/", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_unknown)
        self._on("authenticate", self._authenticate, needs_auth=False)
        self._on("refresh_token", self._refresh_token)
        self._on("subscribe_order_updates", self._subscribe)
        self._on("unsubscribe_order_updates", self._unsubscribe)
        self._on("user_update_request", self._user_update)
        self._on("resume", self._resume)
        core.bus.subscribe(self.on_messages)

    def attach(self, app: web.Application) -> None:
        self.sio.attach(app)

    async def shutdown(self) -> None:
        """Tell every client to reconnect (to another instance), then close the transports.

        No Socket.IO DISCONNECT is sent: official clients do not reconnect after a server
        disconnect, while a closed transport makes them reconnect on their own."""
        self._closing = True  # recovery records stay as last written: clients come back
        if self.connections:
            await self.sio.emit("server_shutdown", {"reconnect": True})
        await self.sio.shutdown()
        await self.recovery.close()

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
                await self._disconnect(conn)
        return len(ending)

    async def move(self, user_id: str, join: Sequence[str], leave: Sequence[str]) -> int:
        """Join/leave rooms for the user's live connections; the next event follows them."""
        conns = [conn for conn in self.connections.values() if conn.user_id == user_id]
        for conn in conns:
            await self._grant(conn, join, leave)
        return len(conns)

    async def _grant(self, conn: Connection, join: Sequence[str], leave: Sequence[str]) -> None:
        joined, left = self.core.move(conn, join, leave)
        if joined or left:
            conn.granted = (conn.granted | set(joined)) - set(left)
        for room in joined:
            await self.sio.enter_room(conn.id, room)
        for room in left:
            await self.sio.leave_room(conn.id, room)
        self._remember(conn)

    # --- fan-out -------------------------------------------------------------------

    async def on_messages(self, messages: list[Message]) -> None:
        """Bus listener: each message to its rooms (each socket once), as a packet built
        around the body the bus encoded. Consecutive messages for the same rooms (a burst
        to one room) go to each recipient as one write of all their frames."""
        offsets = self.recovery.enabled
        catching_up = self._catching_up
        runs: list[Run] = []
        run: list[bytes] = []
        rooms: tuple[str, ...] = ()
        for message in messages:
            skip = self._held_back(message) if catching_up else None
            frame = event_frame(message.event, message.body,
                                message.position if offsets else None)
            if run and not skip and message.rooms == rooms:
                run.append(frame)
                continue
            rooms, run = message.rooms, [frame]
            runs.append((rooms, run, skip))
        self.sio.manager.send_runs("/", runs)

    def _held_back(self, message: Message) -> list[str]:
        """Sockets still catching up that must not get ``message`` live (their catch-up
        sends it, or already did)."""
        skip = []
        for sid, (conn, catch_up) in list(self._catching_up.items()):
            if conn.rooms.isdisjoint(message.rooms):
                continue
            if not catch_up.admit(message):
                skip.append(sid)
            elif catch_up.done:
                del self._catching_up[sid]
        return skip

    async def _send_messages(self, sid: str, messages: list[Message]) -> None:
        offsets = self.recovery.enabled
        self.sio.manager.send_runs("/", [((sid,), [
            event_frame(m.event, m.body, m.position if offsets else None) for m in messages],
            None)])

    def _on_slow(self, eio_sid: str) -> None:
        self.metrics.slow_disconnects.labels("websocket").inc()

    # --- connection lifecycle --------------------------------------------------------

    async def _on_connect(self, request: ConnectRequest) -> ConnectAnswer:
        """A CONNECT: a new session, or a recovered one (``auth.pid`` + ``auth.offset`` and a
        valid token of the same user: same sid, its rooms, what it missed, same ``pid``)."""
        auth = request.auth if isinstance(request.auth, dict) else {}
        environ = request.environ
        token = find_token(auth.get("token"), bearer(environ.get("HTTP_AUTHORIZATION")),
                           *parse_qs(environ.get("QUERY_STRING", "")).get("token", []))
        position = auth.get("position") if isinstance(auth.get("position"), str) else None
        _keep_only_client_facts(environ)
        if token is None:
            # Compatibility flow: the client must emit `authenticate` within the timeout.
            conn = self._open(await request.register(None))
            conn.pid = self._new_pid()
            conn.auth_deadline = asyncio.get_running_loop().call_later(
                self.options.auth_timeout, self._spawn, self._auth_timed_out, conn.id)
            return self._answer(conn)
        try:
            identity = await self.core.identify(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"code": exc.code}) from None
        order_ids = await self._connect_orders(identity, auth.get("orders"))
        recovering = await self._recoverable(auth, identity, order_ids)
        restored_orders: list[str] | None = None
        if recovering is not None:
            order_ids += recovering.orders
            await self._evict(recovering.record.sid)
        elif position:
            restored_orders = await self._recent_orders(identity, order_ids)
            order_ids += restored_orders or []
        since = await self.recovery.start_position() if self.recovery.enabled else None
        sid = await request.register(recovering.record.sid if recovering and
                                     recovering.record.sid not in self.connections else None)
        conn = self._open(sid)
        if recovering is not None or position:  # hold live messages from joining rooms on
            self._catching_up[sid] = (conn, CatchUp())
        await self._adopt(conn, identity)
        for room in self.core.join_orders(conn, order_ids):
            await self.sio.enter_room(sid, room)
        if recovering is not None:
            replay = await self._catch_up_recovery(conn, recovering)
            if replay.recovered:
                conn.pid, conn.since = auth["pid"], recovering.record.since
                self._remember(conn)
                return self._answer(conn, lambda: self._release(conn, replay))
        conn.pid, conn.since = self._new_pid(), since
        self._remember(conn)
        if position:
            return self._answer(conn, lambda: self._replay_on_connect(conn, position,
                                                                      restored_orders))
        if recovering is not None:  # history trimmed meanwhile: not recovered, live at once
            return self._answer(conn, lambda: self._release(conn, Replay([], False)))
        return self._answer(conn)

    async def _recoverable(self, auth: dict[str, Any], identity: Identity,
                           order_ids: list[str]) -> _Recovering | None:
        """The session ``auth.pid`` names, if it is ``identity``'s user's, unexpired, and all
        it missed is still in the history (read now, before the sid is taken: a gap makes a
        new session, never a partial replay)."""
        if not self.recovery.enabled or "pid" not in auth:
            return None
        record = await self.recovery.find(auth["pid"], identity)
        if record is None:
            return None
        restored = await self.core.allowed_orders(identity, record.orders, order_ids)
        start = await self.recovery.replay_from(auth.get("offset"), record)
        replay = Replay([], True)
        if start is not None:
            rooms = {*identity.rooms, *record.granted,
                     *(f"order:{order}" for order in order_ids + restored)}
            replay = await self.core.replay(Session(record.sid, "socketio", rooms=rooms), start)
        return _Recovering(record, restored, replay, start) if replay.recovered else None

    async def _catch_up_recovery(self, conn: Connection, recovering: _Recovering) -> Replay:
        """With the rooms joined: the granted rooms too, and what was published between the
        first read and joining (live messages are held meanwhile)."""
        await self._grant(conn, recovering.record.granted, ())
        first = recovering.replay
        last = first.messages[-1].position if first.messages else recovering.start
        more = await self.core.replay(conn, last) if last is not None else Replay([], True)
        return Replay(first.messages + more.messages, more.recovered)

    def _open(self, sid: str) -> Connection:
        conn = Connection(sid, "socketio", bucket=TokenBucket(self.options.rate_per_second,
                                                              self.options.rate_burst))
        self.connections[sid] = conn
        self._count(+1)
        return conn

    def _new_pid(self) -> str | None:
        return self.recovery.new_pid() if self.recovery.enabled else None

    @staticmethod
    def _answer(conn: Connection,
                then: Callable[[], Awaitable[None]] | None = None) -> ConnectAnswer:
        return ConnectAnswer({"pid": conn.pid} if conn.pid else {}, then)

    async def _evict(self, sid: str) -> None:
        """A recovered session's sid still held here (its old transport not yet known dead):
        close that old transport first, so the sid can move to the new one."""
        old = self.connections.get(sid)
        if old is not None:
            old.pid = None  # its end must not touch the record the new session takes over
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        if eio_sid is not None:
            await self.sio.engine.disconnect(eio_sid)
            await asyncio.sleep(0)  # let the disconnect handlers run

    async def _recent_orders(self, identity: Identity, requested: list[str]) -> list[str] | None:
        """For a resume by ``auth.position`` (no recovery support in the client): the order
        rooms of the user's recent sessions that are still allowed (``None``: unknown)."""
        if not self.recovery.enabled:
            return None
        recent = await self.recovery.recent_orders(identity.user_id)
        if recent is None:
            return None
        return await self.core.allowed_orders(identity, recent, requested)

    async def _connect_orders(self, identity: Identity, requested: Any) -> list[str]:
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
        if conn.pid is not None and not self._closing:
            record = conn.record()
            if conn.ended or reason == self.sio.reason.CLIENT_DISCONNECT or record is None:
                self.recovery.forget(conn.pid)
            else:
                self.recovery.lost(conn.pid, record)
        self.rooms.release(conn)
        self._count(-1)

    def _remember(self, conn: Connection) -> None:
        """Write the session's record now (it changed): it must outlive this instance."""
        record = conn.record()
        if record is not None and conn.pid is not None:
            self.recovery.remember(conn.pid, record)

    def _live_records(self) -> Iterator[tuple[str, SessionRecord]]:
        """Each live session's record, made when asked for: the caller renews them a
        chunk at a time, so a session that ended meanwhile is left out."""
        connections = self.connections
        for conn in list(connections.values()):
            if connections.get(conn.id) is conn and conn.pid is not None and \
                    (record := conn.record()) is not None:
                yield conn.pid, record

    async def _disconnect(self, conn: Connection) -> None:
        """End a session on purpose (a Socket.IO DISCONNECT): it is not recoverable."""
        conn.ended = True
        await self.sio.disconnect(conn.id)

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
        await self._disconnect(self.connections[sid])

    async def _auth_timed_out(self, sid: str) -> None:
        conn = self.connections.get(sid)
        if conn is None or conn.identity is not None:
            return
        self.metrics.auth_failures.labels("timeout").inc()
        await self.sio.emit("auth_error", {"message": "authentication timed out",
                                           "code": "invalid_token"}, to=sid)
        await self._disconnect(conn)

    async def _replay_on_connect(self, conn: Connection, position: str,
                                 restored_orders: list[str] | None) -> None:
        """Resume by ``auth.position``: replay, release held live messages, then say
        ``recovered`` and which order rooms the resume covered (``ordersRestored`` false:
        the previous session's order rooms were not known; list them in ``auth.orders``)."""
        replay = await self.core.replay(conn, position)
        await self._release(conn, replay)
        if conn.id in self.connections:
            await self.sio.emit("recovered", {
                "recovered": replay.recovered, "orders": sorted(conn.orders),
                "ordersRestored": restored_orders is not None}, to=conn.id)

    async def _release(self, conn: Connection, replay: Replay) -> None:
        """Send the replay, then the live messages held meanwhile that it did not cover; from
        here live messages go straight to the socket (nothing in between may suspend)."""
        entry = self._catching_up.get(conn.id)
        if entry is None or entry[0] is not conn:  # disconnected meanwhile
            return
        catch_up = entry[1]
        held = catch_up.finish(replay.messages)
        if catch_up.done:
            del self._catching_up[conn.id]
        await self._send_messages(conn.id, replay.messages + held)

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
            await self._disconnect(self.connections[sid])

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
        self._remember(conn)
        await self.sio.emit("authenticated", {"userId": identity.user_id}, to=conn.id)
        return {"ok": True, "userId": identity.user_id}

    def _fail_authentication(self, conn: Connection, exc: AuthError) -> Reply:
        self._spawn(self._auth_failed, conn.id, exc.message, exc.code)
        return {"ok": False, "event": "authenticate", "error": exc.code, "code": exc.code,
                "message": exc.message}

    async def _auth_failed(self, sid: str, message: str, code: str) -> None:
        await self.sio.emit("auth_error", {"message": message, "code": code}, to=sid)
        await asyncio.sleep(0.05)  # let the ack (if any) go out first
        conn = self.connections.get(sid)
        if conn is not None:
            await self._disconnect(conn)

    async def _refresh_token(self, conn: Connection, payload: Any) -> Reply:
        try:
            refreshed = await self.core.refresh(conn, parse_token(payload))
        except AuthError as exc:
            raise ClientError(exc.code, exc.message) from None
        await self._move(conn, refreshed.joined, refreshed.left)
        self._remember(conn)
        return {"ok": True, "expiresAt": iso(refreshed.identity.expires_at),
                "leftOrders": refreshed.left_orders}

    async def _subscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        room, snapshot = await self.core.subscribe(conn, order_id)
        await self.sio.enter_room(conn.id, room)
        self._remember(conn)
        await self.sio.emit("order_status", snapshot, to=conn.id)
        return {"ok": True, "orderId": order_id, "status": snapshot["status"]}

    async def _unsubscribe(self, conn: Connection, payload: Any) -> Reply:
        order_id = parse_order_id(payload)
        room = self.core.unsubscribe(conn, order_id)
        if room is not None:
            await self.sio.leave_room(conn.id, room)
            self._remember(conn)
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


async def _no_head() -> None:
    return None


#: What python-socketio keeps of a connection's request (its ``environ``) after connect:
#: enough for the Admin UI's client view, without credentials (``Authorization``,
#: cookies, ``?token=``) and without the rest of the headers (~1 KB per connection).
_ENVIRON_KEPT = ("REMOTE_ADDR", "PATH_INFO", "wsgi.url_scheme", "HTTP_USER_AGENT",
                 "HTTP_ORIGIN", "HTTP_X_FORWARDED_FOR")


def _keep_only_client_facts(environ: dict[str, Any]) -> None:
    kept = {key: environ[key] for key in _ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)
