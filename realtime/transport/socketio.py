"""The seam to python-socketio: its ``AsyncServer`` on our Engine.IO server, with strict intake.

python-socketio stays the Socket.IO server (namespaces, rooms, CONNECT handling, acks,
Admin UI). What reaches it from clients is decided here, in :meth:`SocketIOServer.
_handle_eio_message`: packets are decoded strictly (:mod:`realtime.transport.packets`),
anything malformed closes that session with one log line, a second CONNECT or a packet
for a namespace not joined is a protocol error, an unknown namespace gets CONNECT_ERROR
``{message}``, and event names that python-socketio treats as lifecycle hooks
(``connect``, ``disconnect``, ``*`` …) are never dispatched to them: they go to the
catch-all handler like any unknown event. A server-side disconnect of the last
namespace ends the Engine.IO session and its connection; so does a session that has not
connected to a namespace within ``connect_timeout``. A namespace may take over its
CONNECTs (:meth:`SocketIOServer.on_connect`): connection-state recovery chooses the sid
and adds ``pid`` to the answer.

Every private name of python-socketio this relies on is listed in :data:`PRIVATE_NAMES`
and checked by ``tests/test_seams.py`` against the installed version.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from socketio import packet as sio_packet

from realtime.transport import packets
from realtime.transport.engineio import EngineServer
from realtime.transport.websocket import CloseCode

log = logging.getLogger(__name__)

#: python-socketio members used here or by the gateway that are not public API:
#: overridden (``_engineio_server_class``, ``_handle_eio_connect``,
#: ``_handle_eio_message``, ``_handle_eio_disconnect``) or called (the rest).
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "_engineio_server_class": ("self",),
    "_handle_eio_connect": ("self", "eio_sid", "environ"),
    "_handle_eio_message": ("self", "eio_sid", "data"),
    "_handle_eio_disconnect": ("self", "eio_sid", "reason"),
    "_handle_connect": ("self", "eio_sid", "namespace", "data"),
    "_handle_disconnect": ("self", "eio_sid", "namespace", "reason"),
    "_send_packet": ("self", "eio_sid", "pkt"),
}

#: Event names a client may never trigger: python-socketio's lifecycle hooks, its
#: catch-all, and the names Socket.IO clients reserve for themselves.
RESERVED_EVENTS = frozenset({"connect", "disconnect", "disconnecting", "connect_error",
                             "*", "message", "newListener", "removeListener"})

#: Refused CONNECT attempts one session may make before it is closed, and all attempts.
MAX_REFUSED_CONNECTS = 3
MAX_CONNECTS = 10

@dataclass(slots=True)
class ConnectRequest:
    """A CONNECT for a namespace with its own handler (:meth:`SocketIOServer.on_connect`)."""

    eio_sid: str
    namespace: str
    environ: dict[str, Any]
    auth: Any
    #: Enter the namespace as the given sid (a recovered session's) or a new one; returns
    #: the sid. Call it once, after every check that may refuse the CONNECT.
    register: Callable[[str | None], Awaitable[str]]


@dataclass(slots=True)
class ConnectAnswer:
    """Fields added to the CONNECT answer next to ``sid`` (e.g. ``pid``), and what to run
    once the answer is on its way (so nothing reaches the client before it)."""

    fields: dict[str, Any] = field(default_factory=dict)
    then: Callable[[], Awaitable[None]] | None = None


ConnectHandler = Callable[[ConnectRequest], Awaitable[ConnectAnswer]]

_ACK_WANTED: contextvars.ContextVar[bool] = contextvars.ContextVar("ack_wanted", default=False)


def ack_wanted() -> bool:
    """Whether the client event being handled asked for an ack."""
    return _ACK_WANTED.get()


class SocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, engine: EngineServer, *, client_manager: Any,
                 connect_timeout: float) -> None:
        self.engine = engine
        self.connect_timeout = connect_timeout
        self._binary: dict[str, packets.Packet] = {}
        self._connects: dict[str, tuple[int, int]] = {}  # attempts, refused
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._connect_handlers: dict[str, ConnectHandler] = {}
        socket_logger = logging.getLogger("realtime.socketio")
        if socket_logger.level == logging.NOTSET:
            socket_logger.setLevel(logging.WARNING)  # its INFO lines are per room join
        super().__init__(client_manager=client_manager, logger=socket_logger,
                         async_handlers=True)

    def _engineio_server_class(self) -> Callable[..., EngineServer]:
        engine = self.engine
        return lambda **_: engine

    # --- session lifecycle ---------------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self._arm_deadline(eio_sid)

    def _arm_deadline(self, eio_sid: str) -> None:
        """A session must be in a namespace within ``connect_timeout`` (again after leaving)."""
        previous = self._deadlines.pop(eio_sid, None)
        if previous is not None:
            previous.cancel()
        self._deadlines[eio_sid] = asyncio.get_running_loop().call_later(
            self.connect_timeout, self._connect_deadline, eio_sid)

    def _connect_deadline(self, eio_sid: str) -> None:
        self._deadlines.pop(eio_sid, None)
        socket = self.engine.sockets.get(eio_sid)
        if socket is not None and not self._namespaces_of(eio_sid):
            self.engine.reject(socket, "no Socket.IO CONNECT in time", CloseCode.POLICY_VIOLATION)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: str) -> None:
        """The Engine.IO session ended. A client's Engine.IO close is a closed transport to
        Socket.IO, as in Node's server: only a Socket.IO DISCONNECT is the client leaving
        (connection-state recovery keeps sessions whose transport was closed)."""
        if reason == self.reason.CLIENT_DISCONNECT:
            reason = self.reason.TRANSPORT_CLOSE
        self._binary.pop(eio_sid, None)
        self._connects.pop(eio_sid, None)
        deadline = self._deadlines.pop(eio_sid, None)
        if deadline is not None:
            deadline.cancel()
        await super()._handle_eio_disconnect(eio_sid, reason)

    def _namespaces_of(self, eio_sid: str) -> list[str]:
        return [ns for ns in self.manager.get_namespaces()
                if self.manager.sid_from_eio_sid(eio_sid, ns) is not None]

    async def disconnect(self, sid: str, namespace: str | None = None,
                         ignore_queue: bool = False) -> None:
        """Disconnect ``sid`` from the namespace; with no namespace left, end the session."""
        namespace = namespace or "/"
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        await super().disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        if eio_sid is not None and not self._namespaces_of(eio_sid):
            await self.engine.disconnect(eio_sid)

    # --- CONNECT ---------------------------------------------------------------------------

    def on_connect(self, namespace: str, handler: ConnectHandler) -> None:
        """Handle CONNECTs to ``namespace`` with ``handler`` instead of a ``connect`` event
        handler: it may choose the sid (connection-state recovery restores one) and add
        fields to the answer. It refuses with ``socketio.exceptions.ConnectionRefusedError``."""
        self._connect_handlers[namespace] = handler

    async def _handle_connect(self, eio_sid: str, namespace: str, data: Any) -> None:
        handler = self._connect_handlers.get(namespace)
        if handler is None:  # the Admin UI's namespace: python-socketio's own flow
            await super()._handle_connect(eio_sid, namespace, data)
            return
        registered: list[str] = []

        async def register(sid: str | None = None) -> str:
            new = await self.manager.pre_connect(eio_sid, namespace, sid)
            if new is None:
                raise packets.PacketError(f"already connected to namespace {namespace[:20]!r}")
            registered.append(new)
            return str(new)

        try:
            answer = await handler(ConnectRequest(eio_sid, namespace, self.environ[eio_sid],
                                                  data, register))
            sid = registered[0] if registered else await register(None)
        except socketio.exceptions.ConnectionRefusedError as exc:
            await self._send_packet(eio_sid, self.packet_class(
                sio_packet.CONNECT_ERROR, data=exc.error_args, namespace=namespace))
            for sid in registered:
                await self.manager.disconnect(sid, namespace, ignore_queue=True)
            return
        await self._send_packet(eio_sid, self.packet_class(
            sio_packet.CONNECT, {"sid": sid, **answer.fields}, namespace=namespace))
        await self.manager.connect(sid, namespace)
        if answer.then is not None:
            self._spawn(answer.then())

    # --- client packets ------------------------------------------------------------------

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        socket = self.engine.sockets.get(eio_sid)
        if socket is None:
            return
        try:
            packet = self._decode(eio_sid, data)
            if packet is not None:
                await self._dispatch(eio_sid, packet)
        except packets.PacketError as exc:
            self.engine.reject(socket, f"invalid Socket.IO packet: {exc}")

    def _decode(self, eio_sid: str, data: str | bytes) -> packets.Packet | None:
        """The next whole packet, or ``None`` while binary attachments are pending."""
        pending = self._binary.get(eio_sid)
        if isinstance(data, bytes):
            if pending is None:
                raise packets.PacketError("unexpected binary message")
            if not pending.add_attachment(data):
                return None
            del self._binary[eio_sid]
            return pending
        if pending is not None:
            raise packets.PacketError("text packet while binary attachments are pending")
        packet = packets.decode(data)
        if packet.attachments:
            self._require_connected(eio_sid, packet.namespace)
            self._binary[eio_sid] = packet
            return None
        return packet

    def _require_connected(self, eio_sid: str, namespace: str) -> str:
        sid: str | None = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            raise packets.PacketError(f"not connected to namespace {namespace[:20]!r}")
        return sid

    async def _dispatch(self, eio_sid: str, packet: packets.Packet) -> None:
        namespace = packet.namespace
        if packet.type == packets.CONNECT:
            await self._connect(eio_sid, namespace, packet.data)
            return
        sid = self._require_connected(eio_sid, namespace)
        if packet.type == packets.DISCONNECT:
            await self._handle_disconnect(eio_sid, namespace, self.reason.CLIENT_DISCONNECT)
            if not self._namespaces_of(eio_sid):
                self._arm_deadline(eio_sid)
        elif packet.type in (packets.EVENT, packets.BINARY_EVENT):
            self._spawn(self._event(eio_sid, sid, namespace, packet))
        elif packet.id in self.manager.callbacks.get(sid, {}):
            await self.manager.trigger_callback(sid, packet.id, packet.data)
        # an ack for nothing the server asked is dropped without a word

    async def _connect(self, eio_sid: str, namespace: str, auth: Any) -> None:
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            raise packets.PacketError(f"already connected to namespace {namespace[:20]!r}")
        if namespace not in self.handlers and namespace not in self.namespace_handlers \
                and namespace not in self._connect_handlers:
            await self._send_packet(eio_sid, self.packet_class(
                sio_packet.CONNECT_ERROR, data={"message": "Invalid namespace"},
                namespace=namespace))
            return
        attempts, refused = self._connects.get(eio_sid, (0, 0))
        if attempts >= MAX_CONNECTS:
            raise packets.PacketError("too many CONNECTs")
        await self._handle_connect(eio_sid, namespace, auth)
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is None:
            refused += 1
        self._connects[eio_sid] = (attempts + 1, refused)
        socket = self.engine.sockets.get(eio_sid)
        if refused >= MAX_REFUSED_CONNECTS and socket is not None:
            self.engine.reject(socket, "too many refused CONNECTs", CloseCode.POLICY_VIOLATION)

    async def _event(self, eio_sid: str, sid: str, namespace: str,
                     packet: packets.Packet) -> None:
        """Run the event's handler (the catch-all for unknown and reserved names) and ack."""
        name, args = packet.data[0], packet.data[1:]
        handlers = self.handlers.get(namespace, {})
        handler: Callable[..., Awaitable[Any]] | None = None
        if name not in RESERVED_EVENTS:
            handler = handlers.get(name)
        if handler is None:
            catch_all = handlers.get("*")
            if catch_all is None:
                return
            args = [sid, *args]
            handler, args = catch_all, [name, *args]
        else:
            args = [sid, *args]
        _ACK_WANTED.set(packet.id is not None)
        result = await handler(*args)
        if packet.id is not None:
            data = [] if result is None else list(result) if isinstance(result, tuple) \
                else [result]
            await self._send_packet(eio_sid, self.packet_class(
                sio_packet.ACK, namespace=namespace, id=packet.id, data=data))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("event handler failed: %s: %s", type(exc).__name__, exc)
