"""A python-socketio manager whose per-socket operations cost O(rooms of that socket).

python-socketio's stock manager finds a socket's rooms by scanning every room of the
namespace and keeps pending sids in lists, so disconnecting N sockets that each have a
personal room costs O(N²) (20k sockets took ~89 s). This manager keeps a sid → rooms
index and set-backed pending collections.

Its ``emit`` is the broadcast fast path: the packet is encoded and framed once and handed
to each recipient's session through :meth:`EngineServer.deliver
<realtime.transport.engineio.EngineServer.deliver>`, with no task per recipient. A packet
that arrives framed (a bus message's, :func:`~realtime.transport.payload.event_frame`)
goes out through :meth:`IndexedManager.send_frames` as it is, to the Engine.IO sessions
the manager keeps per named room (:attr:`IndexedManager.sessions`): no lookup per recipient.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

import socketio
from bidict import ValueDuplicationError
from socketio import packet

from realtime.transport.engineio import EngineSocket
from realtime.transport.websocket import frame, text_payload

#: python-socketio manager members this class overrides or reads (checked by
#: ``tests/test_seams.py``): the pending collections and the ``basic_*`` room primitives.
PRIVATE_NAMES = ("pending_connect", "pending_disconnect", "callbacks", "rooms",
                 "pre_connect", "pre_disconnect", "basic_enter_room", "basic_leave_room",
                 "basic_disconnect", "get_rooms", "eio_sid_from_sid", "sid_from_eio_sid",
                 "is_connected", "get_namespaces", "trigger_callback")


_second = itemgetter(1)
_NONE: dict[str, Any] = {}


class _SidSet(dict[str, None]):
    """The list API python-socketio uses for pending sids, with O(1) membership/removal."""

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]


class IndexedManager(socketio.AsyncManager):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.sid_rooms: dict[tuple[str, str], set[Any]] = {}
        #: namespace → named room → sid → its Engine.IO session (a socket's own sid room
        #: and the namespace's room ``None`` are left out: each would cost a dict per
        #: connection, and only a replay or the stock paths address them).
        self.sessions: dict[str, dict[str, dict[str, EngineSocket]]] = {}

    async def emit(self, event: str, data: Any, namespace: str, room: Any = None,
                   skip_sid: Any = None, callback: Any = None, to: Any = None,
                   **kwargs: Any) -> None:
        if callback is not None:  # each recipient needs its own ack id: the stock path
            await super().emit(event, data, namespace, room=room, skip_sid=skip_sid,
                               callback=callback, to=to, **kwargs)
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(packet.EVENT, namespace=namespace,
                                           data=[event, *args]).encode()
        packets = ["4" + part if isinstance(part, str) else part
                   for part in (encoded if isinstance(encoded, list) else [encoded])]
        self.server.eio.deliver(self._sessions(namespace, to or room, skip_sid),
                                b"".join([frame(p) for p in packets]), lambda: packets)

    def send_frames(self, namespace: str, rooms: tuple[str, ...], frames: list[bytes],
                    skip_sid: list[str] | None = None) -> None:
        """Send prebuilt WebSocket text frames of Engine.IO packets (``42[...]``,
        :func:`~realtime.transport.payload.event_frame`) to the members of ``rooms`` (each
        socket once), except ``skip_sid``: one write of all of them per WebSocket
        recipient; a long-polling one gets the packets inside them."""
        if len(rooms) == 1 and not skip_sid:
            members = self.sessions.get(namespace, _NONE).get(rooms[0])
            sessions: Iterable[EngineSocket] | None = \
                members.values() if members is not None else None
        else:
            sessions = None
        if sessions is None:  # several rooms, someone to skip, or a room not in sessions
            sessions = self._sessions(namespace, rooms, skip_sid)
            if not sessions:
                return
        self.server.eio.deliver(sessions, frames[0] if len(frames) == 1 else b"".join(frames),
                                lambda: [text_payload(frame).decode() for frame in frames])

    def _sessions(self, namespace: str, room: Any, skip_sid: Any) -> list[EngineSocket]:
        """The Engine.IO sessions of :meth:`_recipients`."""
        if namespace not in self.rooms:
            return []
        sockets = self.server.eio.sockets
        return [socket for socket in map(sockets.get, self._recipients(namespace, room, skip_sid))
                if socket is not None]

    def _recipients(self, namespace: str, room: Any, skip_sid: Any) -> list[str]:
        """engine.io sids of a room (or rooms), each once, without ``skip_sid``.

        A room is a ``bidict``, whose ``values()`` builds (and keeps) an inverse bidict the
        first time: only ``items()`` is read, a plain view of its forward dict."""
        rooms = self.rooms[namespace]
        if room is not None and not isinstance(room, str):
            members: dict[str, str] = {}
            for name in room:
                if name in rooms:
                    members.update(rooms[name].items())
        else:
            members = rooms.get(room) or {}
        if not skip_sid:
            return list(members.values())
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        return [eio_sid for sid, eio_sid in members.items() if sid not in skip]

    async def pre_connect(self, eio_sid: str, namespace: str,
                          sid: str | None = None) -> str | None:
        """Register a CONNECT as ``sid`` (a recovered session's) or a new sid; ``None`` if
        the Engine.IO session is already in the namespace."""
        sid = sid or self.server.eio.generate_id()
        try:
            self.basic_enter_room(sid, namespace, None, eio_sid=eio_sid)
        except ValueDuplicationError:
            return None
        self.basic_enter_room(sid, namespace, sid, eio_sid=eio_sid)
        self.pending_connect.setdefault(namespace, _SidSet()).append(sid)
        return sid

    def pre_disconnect(self, sid: str, namespace: str) -> Any:
        self.pending_disconnect.setdefault(namespace, _SidSet())
        return super().pre_disconnect(sid, namespace)

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.sid_rooms.setdefault((namespace, sid), set()).add(room)
        if room is not None and room != sid and self.server is not None:
            socket = self.server.eio.sockets.get(self.rooms[namespace][room][sid])
            if socket is not None:
                self.sessions.setdefault(namespace, {}).setdefault(room, {})[sid] = socket

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        self._forget(sid, namespace, room)
        rooms = self.sid_rooms.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)

    def _forget(self, sid: str, namespace: str, room: Any) -> None:
        """Drop ``sid`` from :attr:`sessions` of ``room``."""
        rooms = self.sessions.get(namespace, _NONE)
        members = rooms.get(room)
        if members is not None and members.pop(sid, None) is not None and not members:
            del rooms[room]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        rooms = self.sid_rooms.pop((namespace, sid), set())
        # Leave named rooms first and the connection map (room None) last.
        for room in sorted(rooms, key=lambda r: r is None):
            super().basic_leave_room(sid, namespace, room)
            self._forget(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids is not None and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [r for r in self.sid_rooms.get((namespace, sid), ()) if r is not None]
