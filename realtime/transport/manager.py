"""A python-socketio manager whose per-socket operations cost O(rooms of that socket).

python-socketio's stock manager finds a socket's rooms by scanning every room of the
namespace and keeps pending sids in lists, so disconnecting N sockets that each have a
personal room costs O(N²) (20k sockets took ~89 s). This manager keeps a sid → rooms
index and set-backed pending collections.

Its ``emit`` is the broadcast fast path: the packet is encoded and framed once and handed
to each recipient's session through :meth:`EngineServer.deliver
<realtime.transport.engineio.EngineServer.deliver>`, with no task per recipient. A packet
that arrives framed (a bus message's, :func:`~realtime.transport.payload.event_frame`)
goes out through :meth:`IndexedManager.send_runs` as it is, to the Engine.IO sessions
the manager keeps per named room (:attr:`IndexedManager.sessions`): no lookup per recipient.
"""

from __future__ import annotations

from typing import Any

import socketio
from bidict import ValueDuplicationError
from socketio import packet

from realtime.transport.engineio import EngineSocket
from realtime.transport.websocket import frame

#: python-socketio manager members this class overrides or reads (checked by
#: ``tests/test_seams.py``): the pending collections and the ``basic_*`` room primitives.
PRIVATE_NAMES = ("pending_connect", "pending_disconnect", "callbacks", "rooms",
                 "pre_connect", "pre_disconnect", "basic_enter_room", "basic_leave_room",
                 "basic_disconnect", "get_rooms", "eio_sid_from_sid", "sid_from_eio_sid",
                 "is_connected", "get_namespaces", "trigger_callback")


_NONE: dict[str, Any] = {}
#: Frames for the members of some rooms, but the sids to skip (``None``: nobody).
Run = tuple[tuple[str, ...], list[bytes], list[str] | None]


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
                                [frame(p) for p in packets], packets)

    def send_runs(self, namespace: str, runs: list[Run]) -> None:
        """Send each run of prebuilt WebSocket text frames of Engine.IO packets
        (``42[...]``, :func:`~realtime.transport.payload.event_frame`) to the members of its
        rooms (each socket once), except the sids it skips: one write of all its frames per
        WebSocket recipient; a long-polling one gets the packets inside them."""
        deliver = self.server.eio.deliver
        indexed = self.sessions.get(namespace, _NONE)
        for rooms, frames, skip in runs:
            members = indexed.get(rooms[0]) if len(rooms) == 1 and not skip else None
            if members is not None:
                deliver(members.values(), frames)
            else:  # several rooms, someone to skip, or a room not indexed (a sid's own)
                sessions = self._sessions(namespace, rooms, skip)
                if sessions:
                    deliver(sessions, frames)

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
