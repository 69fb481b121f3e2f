"""Transport-independent parts of a client connection, shared by every gateway.

A :class:`Session` knows who the client is and which rooms it is in; :class:`RoomPolicy`
applies the room rules (automatic user/role rooms, order authorization and limits) and
keeps the bus's local-interest counts right, whatever the transport.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from realtime.auth.identity import Identity
from realtime.auth.orders import OrderAccess
from realtime.bus import RoomInterest
from realtime.clock import iso
from realtime.dependency import DependencyError
from realtime.gateways.protocol import ClientError
from realtime.state.orders import OrderInfo, OrderStore
from realtime.state.presence import MemoryPresence, Presence

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Session:
    """One client connection, whatever its transport."""

    id: str
    transport: str
    identity: Identity | None = None
    rooms: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    expiry: asyncio.TimerHandle | None = None

    @property
    def user_id(self) -> str | None:
        return self.identity.user_id if self.identity else None

    def cancel_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def schedule_expiry(self, on_expired: Callable[[], object]) -> None:
        """Call ``on_expired`` when the identity's token expires (replacing any earlier timer)."""
        self.cancel_expiry()
        if self.identity is None or not self.identity.expires_at:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, self.identity.expires_at - time.time())
        self.expiry = loop.call_later(delay, on_expired)


class RoomPolicy:
    """Decides which rooms a session may be in and records local interest in them."""

    def __init__(self, access: OrderAccess, orders: OrderStore, interest: RoomInterest,
                 max_orders: int, presence: Presence | None = None) -> None:
        self.access = access
        self.orders = orders
        self.interest = interest
        self.max_orders = max_orders
        self.presence = presence or MemoryPresence()

    def identity_rooms(self, session: Session, identity: Identity) -> tuple[list[str], list[str]]:
        """Adopt ``identity``; returns the (joined, left) automatic rooms.

        On a refreshed token the user stays the same, but roles may change.
        """
        old = set(session.identity.rooms) if session.identity else set()
        new = set(identity.rooms)
        session.identity = identity
        joined, left = sorted(new - old), sorted(old - new)
        for room in joined:
            self.add(session, room)
        for room in left:
            self.remove(session, room)
        return joined, left

    async def authorize_order(self, session: Session, order_id: str) -> OrderInfo | None:
        """Raise :class:`ClientError` unless the session may watch ``order_id``."""
        if session.identity is None:
            raise ClientError("unauthenticated", "authenticate first")
        if order_id not in session.orders and len(session.orders) >= self.max_orders:
            raise ClientError("invalid", f"too many order subscriptions (max {self.max_orders})")
        try:
            decision = await self.access.check(session.identity, order_id)
            if decision.allowed:
                return await self.orders.get(order_id)
        except DependencyError as exc:
            log.warning("order state unavailable: %s", exc)
            raise ClientError("unavailable", "order state is temporarily unavailable") from None
        message = ("authorization service unavailable" if decision.verdict == "unavailable"
                   else f"not allowed to watch order {order_id}")
        raise ClientError(decision.verdict, message)

    def add_order(self, session: Session, order_id: str) -> str:
        session.orders.add(order_id)
        room = f"order:{order_id}"
        self.add(session, room)
        return room

    def remove_order(self, session: Session, order_id: str) -> str | None:
        if order_id not in session.orders:
            return None
        session.orders.discard(order_id)
        room = f"order:{order_id}"
        self.remove(session, room)
        return room

    def add(self, session: Session, room: str) -> None:
        if room not in session.rooms:
            session.rooms.add(room)
            self.interest.add(room)
            self.presence.joined(session.id, session.user_id or "", room)

    def remove(self, session: Session, room: str) -> None:
        if room in session.rooms:
            session.rooms.discard(room)
            self.interest.discard(room)
            self.presence.left(session.id, session.user_id or "", room)

    def release(self, session: Session) -> None:
        """The session ended: drop all its interest and timers."""
        session.cancel_expiry()
        for room in session.rooms:
            self.interest.discard(room)
            self.presence.left(session.id, session.user_id or "", room)
        session.rooms.clear()
        session.orders.clear()


def order_snapshot(order_id: str, info: OrderInfo | None) -> dict[str, object]:
    """The ``order_status`` payload: the latest known status, or ``null``."""
    return {
        "orderId": order_id,
        "status": info.status if info else None,
        "updatedAt": iso(info.updated_at) if info else None,
    }
