"""The session flows both gateways share, free of any transport.

A Socket.IO connection and an SSE stream go through the same steps: find the token,
verify it, authorize the order rooms asked for at connect (before joining them, so a
resume covers them), take the identity's automatic rooms, refresh with a full re-check,
replay what a resuming client missed and hand over to the live stream without a gap or a
duplicate. The gateways only adapt these steps to their transport (python-socketio
rooms and events; an SSE frame queue).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from realtime.auth import AuthError, Identity, TokenVerifier
from realtime.bus import FanoutBus, Message
from realtime.gateways.catchup import CatchUp
from realtime.gateways.protocol import ClientError, parse_order_id
from realtime.gateways.session import RoomPolicy, Session, order_snapshot
from realtime.metrics import Metrics
from realtime.state.revocations import MemoryRevocations, Revocations

log = logging.getLogger(__name__)


def find_token(*candidates: object) -> str | None:
    """The first usable token among the places a client may put one, in order of precedence
    (``auth.token``, ``Authorization: Bearer``, ``?token=``, the SSE cookie)."""
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def bearer(header: object) -> str | None:
    """The token of an ``Authorization: Bearer …`` header value."""
    if isinstance(header, str) and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What a refresh changed: automatic rooms joined and left, order rooms given up."""

    identity: Identity
    joined: list[str]
    left: list[str]
    left_orders: list[str]


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resuming client is sent, in order, and whether it covers the whole gap."""

    messages: list[Message]
    recovered: bool


class SessionCore:
    """Identity, rooms and recovery for one connection of any transport."""

    def __init__(self, verifier: TokenVerifier, rooms: RoomPolicy, bus: FanoutBus,
                 metrics: Metrics, revocations: Revocations | None = None) -> None:
        self.verifier = verifier
        self.rooms = rooms
        self.bus = bus
        self.metrics = metrics
        self.revocations = revocations or MemoryRevocations(86400.0)

    async def identify(self, token: str | None) -> Identity:
        """Verify ``token`` and refuse a revoked one (raises :class:`AuthError`, counted by
        code). Every way in goes through here: Socket.IO connect (and its connection-state
        recovery), ``authenticate``, ``refresh_token`` and SSE connect (and its resume)."""
        try:
            if token is None:
                raise AuthError("invalid_token", "token required")
            identity = await self.verifier.verify(token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.code).inc()
            raise
        if await self.revocations.is_revoked(identity):
            self.metrics.auth_failures.labels("revoked").inc()
            raise AuthError("invalid_token", "token has been revoked")
        return identity

    async def authorize_orders(self, identity: Identity,
                               requested: Iterable[object]) -> list[str]:
        """Order ids ``identity`` may watch, all checked before a connection joins any
        (raises :class:`ClientError` for the first refused or malformed one)."""
        order_ids = list(dict.fromkeys(parse_order_id(raw) for raw in requested))
        if len(order_ids) > self.rooms.max_orders:
            raise ClientError("invalid", f"at most {self.rooms.max_orders} orders")
        probe = Session("authorization", "core", identity=identity)
        for order_id in order_ids:
            await self.rooms.authorize_order(probe, order_id)
        return order_ids

    async def allowed_orders(self, identity: Identity, candidates: Iterable[str],
                             taken: Sequence[str] = ()) -> list[str]:
        """Of ``candidates`` (a recovered session's order rooms), those ``identity`` may
        still watch and that are not in ``taken``, within the subscription limit; the others
        are left out without an error (the session's rights may have changed)."""
        allowed: list[str] = []
        probe = Session("authorization", "core", identity=identity)
        for order_id in dict.fromkeys(candidates):
            if order_id in taken or len(taken) + len(allowed) >= self.rooms.max_orders:
                continue
            try:
                await self.rooms.authorize_order(probe, parse_order_id(order_id))
            except ClientError:
                continue
            allowed.append(order_id)
        return allowed

    def adopt(self, session: Session, identity: Identity) -> tuple[list[str], list[str]]:
        """Take ``identity``: the (joined, left) automatic rooms."""
        return self.rooms.identity_rooms(session, identity)

    def join_orders(self, session: Session, order_ids: Iterable[str]) -> list[str]:
        return [self.rooms.add_order(session, order_id) for order_id in order_ids]

    async def subscribe(self, session: Session, order_id: str) -> tuple[str, dict[str, object]]:
        """Authorize and join one order room: the room, and the ``order_status`` snapshot."""
        info = await self.rooms.authorize_order(session, order_id)
        return self.rooms.add_order(session, order_id), order_snapshot(order_id, info)

    def unsubscribe(self, session: Session, order_id: str) -> str | None:
        """Leave one order room (the room left, if the session was in it)."""
        return self.rooms.remove_order(session, order_id)

    def move(self, session: Session, join: Sequence[str],
             leave: Sequence[str]) -> tuple[list[str], list[str]]:
        """Rooms a backend adds or removes (control API): the (joined, left) ones. No
        authorization and no replay: the backend decided. A joined ``order:`` room is not an
        order subscription (a refresh does not re-check it); a left one ends it."""
        joined = [room for room in join if room not in session.rooms]
        for room in joined:
            self.rooms.add(session, room)
        left = [room for room in leave if room in session.rooms]
        for room in left:
            self.rooms.remove(session, room)
            if room.startswith("order:"):
                session.orders.discard(room.removeprefix("order:"))
        return joined, left

    async def refresh(self, session: Session, token: str) -> Refreshed:
        """A new token for the same user: its roles replace the old ones, and every order
        room is authorized again (a token with fewer rights leaves what it no longer allows)."""
        identity = await self.identify(token)
        if session.identity is not None and identity.user_id != session.identity.user_id:
            raise ClientError("forbidden", "the new token is for another user")
        joined, left = self.adopt(session, identity)
        left_orders: list[str] = []
        for order_id in sorted(session.orders):
            try:
                await self.rooms.authorize_order(session, order_id)
            except ClientError:
                room = self.rooms.remove_order(session, order_id)
                if room is not None:
                    left.append(room)
                    left_orders.append(order_id)
        return Refreshed(identity, joined, left, left_orders)

    async def replay(self, session: Session, position: str,
                     catch_up: CatchUp | None = None) -> Replay:
        """What the session missed since ``position`` for its rooms; with ``catch_up`` (live
        messages held since it joined), followed by the held ones the replay did not cover.
        Connection-state recovery, ``auth.position``, ``resume`` and SSE's ``Last-Event-ID``
        all come through here."""
        try:
            found = await self.bus.replay(session.rooms, position)
            messages, recovered = list(found.messages), found.recovered
        except Exception as exc:  # the bus is down: say "not recovered", never hang
            log.warning("replay for %s failed: %s: %s", session.id, type(exc).__name__, exc,
                        extra={"connectionId": session.id})
            messages, recovered = [], False
        if catch_up is not None:
            messages += catch_up.finish(messages)
        return Replay(messages, recovered)
