"""Engine.IO v4 server: sessions over HTTP long-polling and WebSocket, on aiohttp.

Written from the protocol document (``socketio/engine.io-protocol``) and owned here
because python-engineio departs from it where users and attackers can reach (cut
heartbeat values, sessions opened without a transport, duplicate polls, invalid packets
answered ``OK``, bodies truncated below ``maxPayload``) and because the broadcast fast
path needs per-socket outboxes. python-socketio runs on top through the small interface
it uses (``on``, ``send``, ``disconnect``, ``generate_id``, ...), see
:mod:`realtime.transport.socketio`.

Per session there is no task while it idles: pings are timers, a long-poll is a future,
a WebSocket is a protocol object on its transport. Client messages are handed to the
``message`` handler one at a time, in order, by a task that lives only while some wait.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from realtime.transport.connection import WebSocketConnection, take_over
from realtime.transport.gcpolicy import HeapFreezer
from realtime.transport.outbox import Flusher, Outbox
from realtime.transport.teardown import TeardownThrottle
from realtime.transport.websocket import CloseCode, frame, text_payload

log = logging.getLogger(__name__)

#: Packets per long-polling response (python-engineio's client decodes at most 16).
MAX_BATCH = 16
#: Client messages waiting for the handler before the WebSocket stops reading.
MAX_INBOX = 64
#: Separator of packets in a long-polling payload.
SEPARATOR = "\x1e"
#: A pending long-poll GET answered by the upgrade probe, or by a client close.
NOOP = "6"

Packet = str | bytes  # an encoded Engine.IO packet: "4hello", "2", ...; bytes = binary message


class Reason:
    """Why a session ended (the values python-socketio and its users know)."""

    SERVER_DISCONNECT = "server disconnect"
    CLIENT_DISCONNECT = "client disconnect"
    PING_TIMEOUT = "ping timeout"
    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"


@dataclass
class EngineConfig:
    """What the engine advertises and enforces (seconds and bytes)."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000
    #: Unsent bytes a WebSocket client may fall behind before it is cut off.
    buffer_limit: int = 1 << 20
    #: Allowed browser origins for long-polling; empty: any origin, without credentials.
    cors_origins: list[str] = field(default_factory=list)


class InvalidPacket(ValueError):
    """A client sent something that is not an Engine.IO packet: the session ends."""


def decode_payload(body: bytes) -> list[Packet]:
    """The packets of a long-polling POST body (``\\x1e``-separated, binary as ``b`` + base64)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidPacket("payload is not UTF-8") from None
    packets: list[Packet] = []
    for part in text.split(SEPARATOR):
        if part[:1] == "b":
            try:
                packets.append(base64.b64decode(part[1:], validate=True))
            except binascii.Error:
                raise InvalidPacket("invalid base64 packet") from None
        else:
            packets.append(part)
    return packets


def encode_payload(packets: Iterable[Packet]) -> bytes:
    return SEPARATOR.join(
        p if isinstance(p, str) else "b" + base64.b64encode(p).decode() for p in packets
    ).encode()


#: The server's heartbeat ``2`` as a WebSocket frame, built once.
PING_FRAME = frame("2")


class EngineSocket:
    """One Engine.IO session, on long-polling or (after the handshake or an upgrade) WebSocket."""

    __slots__ = ("closed", "connected", "draining", "environ", "inbox", "poll", "pong_due",
                 "posting", "probe", "queue", "server", "sid", "timer", "ws")

    def __init__(self, server: EngineServer, sid: str, environ: dict[str, Any]) -> None:
        self.server = server
        self.sid = sid
        self.environ = environ
        self.ws: WebSocketConnection | None = None
        self.probe: WebSocketConnection | None = None  # an upgrade that answered the probe
        self.queue: list[Packet] = []  # for long-polling
        self.poll: asyncio.Future[None] | None = None  # the pending GET
        self.posting = False  # a POST is being read
        # A list, not a deque: it is almost always empty, and an empty deque is ~600 bytes.
        self.inbox: list[Packet | Callable[[], Awaitable[Any]]] = []
        self.draining = False
        self.timer: asyncio.TimerHandle | None = None
        self.pong_due = 0.0  # loop time by which a pong must arrive (0: none awaited)
        self.connected = False  # the ``connect`` handler has run
        self.closed = False

    # --- what python-socketio and the Admin UI read ----------------------------------

    @property
    def upgraded(self) -> bool:
        return self.ws is not None

    @property
    def transport_name(self) -> str:
        return "websocket" if self.ws is not None else "polling"

    # --- sending ------------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        if self.closed:
            return
        if self.ws is not None:
            self.ws.send(frame(packet))
        else:
            self.queue.append(packet)
            self.wake_poll()

    def wake_poll(self) -> None:
        poll = self.poll
        if poll is not None and not poll.done():
            poll.set_result(None)

    # --- receiving ----------------------------------------------------------------------

    def receive(self, packet: Packet) -> None:
        """Handle one packet from the client (raises :class:`InvalidPacket`)."""
        if isinstance(packet, bytes):
            self._deliver(packet)
            return
        kind = packet[:1]
        if kind == "4":
            self._deliver(packet[1:])
        elif kind == "3" and len(packet) == 1:
            self.server.pong(self)
        elif kind == "1" and len(packet) == 1:
            self.close(Reason.CLIENT_DISCONNECT, client=True)
        elif kind == "2":  # v4 clients do not ping; a liveness probe gets its echo, no more
            self.send("3" + packet[1:])
        elif kind == NOOP and len(packet) == 1:
            pass
        else:
            raise InvalidPacket(f"invalid packet {packet[:20]!r}")

    def _deliver(self, data: Packet) -> None:
        self.inbox.append(data)
        if len(self.inbox) >= MAX_INBOX and self.ws is not None:
            self.ws.pause()
        self.drain()

    def drain(self) -> None:
        if not self.draining and self.inbox:
            self.draining = True
            self.server.spawn(self._run_inbox())

    async def _run_inbox(self) -> None:
        """Hand waiting messages to the handlers, one at a time, in order."""
        server = self.server
        try:
            while self.inbox:
                item = self.inbox.pop(0)
                if self.ws is not None and len(self.inbox) == MAX_INBOX // 2:
                    self.ws.resume()
                try:
                    if callable(item):
                        await item()
                    elif not self.closed:
                        await server.handle_message(self, item)
                except Exception as exc:  # a handler bug ends this session only, in one line
                    log.error("session %s: handler failed: %s: %s", self.sid,
                              type(exc).__name__, exc)
                    self.close(Reason.TRANSPORT_ERROR, code=CloseCode.INTERNAL_ERROR)
        finally:
            self.draining = False

    # --- ending -------------------------------------------------------------------------

    def close(self, reason: str, *, client: bool = False,
              code: int = CloseCode.NORMAL) -> None:
        """End the session: flush what it was sent, close its transport, tell the handlers.

        A long-poll waiting gets what was queued and a close packet (a noop when the
        client itself closed, as the protocol's reference implementation does)."""
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for conn in (self.ws, self.probe):
            if conn is not None:
                conn.on_end = _nothing
                conn.close(code)
        if self.ws is None:
            self.queue.append(NOOP if client else "1")
            self.wake_poll()
        self.server.forget(self, reason)
        self.inbox.clear()
        self.inbox.append(lambda: self.server.handle_disconnect(self, reason))
        self.drain()


def _nothing() -> None:
    return None


Handler = Callable[..., Awaitable[Any]]


class EngineServer:
    """Engine.IO v4 sessions for one aiohttp application."""

    async_mode = "aiohttp"
    reason = Reason

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.sockets: dict[str, EngineSocket] = {}
        #: Sessions closed by the server whose last packets a long-poll has not fetched yet.
        self.closing: dict[str, EngineSocket] = {}
        self.handlers: dict[str, Handler] = {}
        self.flusher = Flusher()
        self.teardown = TeardownThrottle()
        self.heap = HeapFreezer()
        self.on_slow: Callable[[str], None] = lambda sid: None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._user_sessions: dict[str, dict[str, Any]] = {}
        self._running: asyncio.AbstractEventLoop | None = None

    # --- the interface python-socketio uses ---------------------------------------------

    def on(self, event: str, handler: Handler | None = None) -> Any:
        if handler is None:
            def register(func: Handler) -> Handler:
                self.handlers[event] = func
                return func
            return register
        self.handlers[event] = handler
        return handler

    def attach(self, app: web.Application, path: str = "socket.io") -> None:
        app.router.add_route("*", f"/{path.strip('/')}/", self.handle_request)

    def generate_id(self) -> str:
        return secrets.token_urlsafe(15)

    def transport(self, sid: str) -> str:
        return self.sockets[sid].transport_name

    async def send(self, sid: str, data: str | bytes) -> None:
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.send("4" + data if isinstance(data, str) else data)

    async def send_packet(self, sid: str, packet: Any) -> None:
        """Send an already built Engine.IO packet (anything with ``encode()``)."""
        socket = self.sockets.get(sid)
        if socket is not None:
            socket.send(packet.encode())

    async def get_session(self, sid: str) -> dict[str, Any]:
        """python-socketio's per-client user session (kept only for clients that use one)."""
        if sid not in self.sockets:
            raise KeyError("Session not found")
        return self._user_sessions.setdefault(sid, {})

    async def save_session(self, sid: str, session: dict[str, Any]) -> None:
        if sid in self.sockets:
            self._user_sessions[sid] = session

    async def disconnect(self, sid: str | None = None) -> None:
        """End one session (or all of them) from the server side."""
        targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
        for socket in targets:
            if socket is not None:
                socket.close(Reason.SERVER_DISCONNECT)

    def create_event(self) -> asyncio.Event:
        return asyncio.Event()

    def start_background_task(self, target: Callable[..., Awaitable[Any]], *args: Any,
                              **kwargs: Any) -> asyncio.Future[Any]:
        return self.spawn(target(*args, **kwargs))

    async def sleep(self, seconds: float = 0) -> None:
        await asyncio.sleep(seconds)

    async def shutdown(self) -> None:
        """End every session, WebSockets with 1001 (going away): clients reconnect,
        elsewhere. Pending long-polls return what was queued and a close packet."""
        for socket in list(self.sockets.values()):
            socket.close(Reason.SERVER_DISCONNECT, code=CloseCode.GOING_AWAY)
        await asyncio.sleep(0)
        for poll_owner in list(self.closing.values()):
            poll_owner.wake_poll()

    # The Socket.IO Admin UI reads these two (python-socketio's ``async_admin``).
    def _get_socket(self, sid: str) -> EngineSocket:
        return self.sockets[sid]

    def _ok(self, *args: Any, **kwargs: Any) -> None:
        return None

    # --- broadcast fast path ----------------------------------------------------------

    @staticmethod
    def deliver(sockets: Iterable[EngineSocket], frames: list[bytes],
                packets: Sequence[Packet] | None = None) -> None:
        """Send a broadcast to each session: a WebSocket one gets ``frames`` (prebuilt) in
        one write to its outbox; a long-polling one gets the Engine.IO ``packets`` (by
        default the text packets inside the frames, made on first need).

        The per-recipient loop of every broadcast, with no task per recipient."""
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        for socket in sockets:
            ws = socket.ws
            if ws is not None:
                ws.outbox.write(data)  # a closed connection's outbox writes nothing
            else:
                if packets is None:
                    packets = [text_payload(frame).decode() for frame in frames]
                for packet in packets:
                    socket.send(packet)

    # --- handlers -------------------------------------------------------------------------

    async def handle_message(self, socket: EngineSocket, data: Packet) -> None:
        if not socket.connected:
            await self._connected(socket)
        handler = self.handlers.get("message")
        if handler is not None:
            await handler(socket.sid, data)

    async def _connected(self, socket: EngineSocket) -> None:
        socket.connected = True
        handler = self.handlers.get("connect")
        if handler is not None:
            await handler(socket.sid, socket.environ)

    async def handle_disconnect(self, socket: EngineSocket, reason: str) -> None:
        if not socket.connected:
            return
        handler = self.handlers.get("disconnect")
        if handler is not None:
            await handler(socket.sid, reason)

    def forget(self, socket: EngineSocket, reason: str) -> None:
        if self.sockets.get(socket.sid) is socket:
            del self.sockets[socket.sid]
            self._user_sessions.pop(socket.sid, None)
        if socket.ws is None and socket.poll is None and reason == Reason.SERVER_DISCONNECT:
            # Keep the last packets (a close packet last) for the next long-poll, for one
            # ping timeout; an error or a timeout ends the session at once.
            self.closing[socket.sid] = socket
            asyncio.get_running_loop().call_later(
                self.config.ping_timeout, self.closing.pop, socket.sid, None)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("session handler failed: %s: %s", type(exc).__name__, exc)

    def reject(self, socket: EngineSocket, why: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        """End a session for invalid input, with one log line (no traceback)."""
        if not socket.closed:
            log.info("closing session %s: %s", socket.sid, why)
            socket.close(Reason.TRANSPORT_ERROR, code=code)

    # --- heartbeat ------------------------------------------------------------------------

    def _start_heartbeat(self, socket: EngineSocket) -> None:
        socket.timer = self._loop().call_later(self.config.ping_interval, self._ping, socket)

    def _ping(self, socket: EngineSocket) -> None:
        if socket.closed:
            return
        loop = self._loop()
        socket.pong_due = loop.time() + self.config.ping_timeout
        if socket.ws is not None:
            socket.ws.send(PING_FRAME)
        else:
            socket.send("2")
        socket.timer = loop.call_later(self.config.ping_timeout, self._ping_timed_out, socket)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, asked for once: every heartbeat needs it, and each
        ``asyncio.get_running_loop()`` of Python 3.11 costs a ``getpid`` system call."""
        loop = self._running
        if loop is None:
            loop = self._running = asyncio.get_running_loop()
        return loop

    def _ping_timed_out(self, socket: EngineSocket) -> None:
        socket.timer = None
        socket.close(Reason.PING_TIMEOUT)

    def pong(self, socket: EngineSocket) -> None:
        """The timeout timer is cancelled, never left to fire: a timer that fires is a loop
        wake-up of its own (measured: a third more CPU per heartbeat)."""
        if not socket.pong_due:
            return  # not asked for
        socket.pong_due = 0.0
        if socket.timer is not None:
            socket.timer.cancel()
        self._start_heartbeat(socket)

    def _expired(self, socket: EngineSocket) -> bool:
        """Checked on every request, so a late request never beats the timeout timer."""
        if socket.pong_due and self._loop().time() > socket.pong_due:
            socket.close(Reason.PING_TIMEOUT)
        return socket.closed

    # --- HTTP ------------------------------------------------------------------------------

    def _open_packet(self, sid: str, upgrades: list[str]) -> str:
        return "0" + orjson.dumps({
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": round(self.config.ping_interval * 1000),
            "pingTimeout": round(self.config.ping_timeout * 1000),
            "maxPayload": self.config.max_payload,
        }).decode()

    def _cors(self, request: web.BaseRequest) -> dict[str, str]:
        origins = self.config.cors_origins
        if not origins:
            return {"Access-Control-Allow-Origin": "*"}
        origin = request.headers.get("Origin")
        headers = {"Vary": "Origin"}
        if origin is not None and origin in origins:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
        return headers

    def _error(self, request: web.BaseRequest, code: int, message: str,
               status: int = 400) -> web.Response:
        return web.Response(status=status, body=orjson.dumps({"code": code, "message": message}),
                            content_type="application/json", headers=self._cors(request))

    def _text(self, request: web.BaseRequest, body: bytes | str,
              content_type: str = "text/plain") -> web.Response:
        return web.Response(body=body.encode() if isinstance(body, str) else body,
                            content_type=content_type, charset="UTF-8",
                            headers=self._cors(request))

    async def handle_request(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("EIO") != "4":
            return self._error(request, 5, "Unsupported protocol version")
        transport = query.get("transport")
        if transport not in ("polling", "websocket"):
            return self._error(request, 0, "Transport unknown")
        if request.method == "OPTIONS":
            headers = self._cors(request)
            headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Content-Type")
            return web.Response(status=204, headers=headers)
        sid = query.get("sid")
        if sid is None:
            if request.method != "GET":
                return self._error(request, 2, "Bad handshake method")
            if transport == "websocket":
                return self._open_websocket(request)
            return self._open_polling(request)
        socket = self.sockets.get(sid)
        if socket is None or self._expired(socket):
            closing = self.closing.pop(sid, None)
            if closing is not None and request.method == "GET" and transport == "polling":
                return self._text(request, encode_payload(closing.queue))
            return self._error(request, 1, "Session ID unknown")
        if transport == "websocket":
            return self._upgrade(request, socket)
        if socket.ws is not None:
            return self._error(request, 3, "Bad request")
        if request.method == "GET":
            return await self._poll(request, socket)
        if request.method == "POST":
            return await self._post(request, socket)
        return self._error(request, 2, "Bad handshake method")

    def _new_socket(self, request: web.BaseRequest, sid: str | None = None) -> EngineSocket:
        socket = EngineSocket(self, sid or self.generate_id(), _environ(request))
        self.sockets[socket.sid] = socket
        self.heap.opened()
        self._start_heartbeat(socket)
        socket.inbox.append(lambda: self._connected(socket))
        socket.drain()
        return socket

    def _open_polling(self, request: web.Request) -> web.Response:
        socket = self._new_socket(request)
        return self._text(request, self._open_packet(socket.sid, ["websocket"]))

    async def _poll(self, request: web.Request, socket: EngineSocket) -> web.Response:
        if socket.poll is not None:
            self.reject(socket, "overlapping long-poll requests")
            return self._error(request, 3, "Bad request")
        if socket.probe is not None:
            return self._text(request, NOOP)
        if not socket.queue:
            socket.poll = poll = asyncio.get_running_loop().create_future()
            try:
                await poll
            finally:
                socket.poll = None
            if socket.probe is not None and not socket.closed:
                return self._text(request, NOOP)
        batch = socket.queue[:MAX_BATCH]
        del socket.queue[:MAX_BATCH]
        if socket.closed and not socket.queue:
            self.closing.pop(socket.sid, None)
        return self._text(request, encode_payload(batch))

    async def _post(self, request: web.Request, socket: EngineSocket) -> web.Response:
        if socket.posting:
            self.reject(socket, "overlapping long-polling POST requests")
            return self._error(request, 3, "Bad request")
        socket.posting = True
        try:
            body = await _read_body(request, self.config.max_payload)
        except PayloadTooLarge:
            self.reject(socket, "long-polling payload over maxPayload", CloseCode.TOO_BIG)
            return self._error(request, 3, "Payload too large", status=413)
        finally:
            socket.posting = False
        if socket.closed:
            return self._error(request, 1, "Session ID unknown")
        try:
            for packet in decode_payload(body):
                socket.receive(packet)
        except InvalidPacket as exc:
            self.reject(socket, str(exc))
            return self._error(request, 3, "Bad request")
        return self._text(request, "ok", content_type="text/html")

    # --- WebSocket -------------------------------------------------------------------------

    def _connection(self, transport: asyncio.Transport, sid: str) -> WebSocketConnection:
        def slow(box: Outbox) -> None:
            log.info("websocket client %s too slow (%d bytes unsent); disconnecting",
                     sid, box.transport.get_write_buffer_size())
            box.transport.abort()
            self.on_slow(sid)

        return WebSocketConnection(transport, self.config.max_payload, self.flusher,
                                   self.config.buffer_limit, slow, self.teardown)

    def _accept(self, request: web.Request,
                sid: str) -> tuple[web.StreamResponse, WebSocketConnection | None]:
        return take_over(request, lambda transport: self._connection(transport, sid))

    def _open_websocket(self, request: web.Request) -> web.StreamResponse:
        sid = self.generate_id()
        response, conn = self._accept(request, sid)
        if conn is not None:
            conn.send(frame(self._open_packet(sid, [])))
            self._attach(self._new_socket(request, sid), conn)
        return response

    def _attach(self, socket: EngineSocket, conn: WebSocketConnection) -> None:
        socket.ws = conn

        def message(data: str | bytes) -> None:
            try:
                socket.receive(data)
            except InvalidPacket as exc:
                self.reject(socket, str(exc))

        def ended() -> None:
            if conn.error is not None:
                log.info("closing session %s: %s", socket.sid, conn.error)
            socket.close(Reason.TRANSPORT_ERROR if conn.error else Reason.TRANSPORT_CLOSE)

        conn.on_message = message
        conn.on_end = ended

    def _upgrade(self, request: web.Request, socket: EngineSocket) -> web.StreamResponse:
        """A long-polling session moving to WebSocket: probe, then upgrade (``5``).

        A second WebSocket for a session that has one (or is probing one) is accepted and
        closed at once, as the protocol's reference implementation does."""
        response, conn = self._accept(request, socket.sid)
        if conn is not None:
            if socket.ws is not None or socket.probe is not None:
                conn.close(CloseCode.POLICY_VIOLATION)
            else:
                self._probe(socket, conn)
        return response

    def _probe(self, socket: EngineSocket, conn: WebSocketConnection) -> None:
        def message(data: str | bytes) -> None:
            if socket.closed:
                conn.close()
            elif data == "2probe" and socket.probe is None:
                socket.probe = conn
                conn.send(frame("3probe"))
                socket.wake_poll()  # the pending long-poll answers a noop
            elif data == "5" and socket.probe is conn:
                socket.probe = None
                queued, socket.queue = socket.queue, []
                self._attach(socket, conn)
                for packet in queued:
                    conn.send(frame(packet))
            else:
                conn.close(CloseCode.PROTOCOL_ERROR)

        def ended() -> None:
            if socket.probe is conn:
                socket.probe = None

        conn.on_message = message
        conn.on_end = ended


class PayloadTooLarge(Exception):
    pass


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes (announced or sent)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


#: What a session keeps of its request: enough for logs and the Admin UI, no credentials.
_ENVIRON_HEADERS = ("User-Agent", "Origin", "X-Forwarded-For")


def _environ(request: web.BaseRequest) -> dict[str, Any]:
    """A WSGI-style environ, as python-socketio's connect handler expects it.

    Credentials are read once at connect (``credentials``) and not kept: the gateway
    pops them. Only a few client facts stay for the session's life."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query_string,
        "REMOTE_ADDR": request.remote or "",
        "wsgi.url_scheme": request.scheme,
    }
    for name in _ENVIRON_HEADERS:
        value = request.headers.get(name)
        if value is not None:
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ
