"""``memory://``: the single-instance bus, with history and de-duplication in process."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from realtime.bus.base import (
    FanoutBus,
    Message,
    Replay,
    body_parts,
    format_position,
    parse_position,
)
from realtime.routing import Delivery

MAX_DEDUP_ENTRIES = 1_000_000
SWEEP_SECONDS = 30.0


class DedupWindow:
    """Keys seen within the last ``window`` seconds (bounded in count, oldest evicted)."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_DEDUP_ENTRIES) -> None:
        self.window = window
        self._clock = clock
        self._max = max_entries
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def seen(self, key: str) -> bool:
        """Whether ``key`` was claimed within the window (expired keys are forgotten here)."""
        now = self._clock()
        expiry = self._expiry
        while expiry:
            oldest, deadline = next(iter(expiry.items()))
            if deadline > now and len(expiry) < self._max:
                break
            del expiry[oldest]
        return key in expiry

    def claim(self, key: str) -> bool:
        """True the first time ``key`` is seen in the window (and it is now claimed)."""
        if self.seen(key):
            return False
        self._expiry[key] = self._clock() + self.window
        return True


class MemoryBus(FanoutBus):
    """Positions from one counter; per-room history bounded by length and age."""

    def __init__(self, *, history_size: int = 1000, history_ttl: float = 3600.0,
                 dedup_window: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._size = history_size
        self._ttl = history_ttl
        self._clock = clock
        self._dedup = DedupWindow(dedup_window, clock)
        self._rooms: dict[str, deque[tuple[float, Message]]] = {}
        self._trimmed: dict[str, int] = {}
        self._expired_floor = 0
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def publish(self, event_id: str,
                      deliveries: Sequence[Delivery]) -> list[Message] | None:
        if self._dedup.seen(event_id):
            return None
        parts = [body_parts(event_id, delivery.payload) for delivery in deliveries]
        # Encoded without error: from here nothing can fail, so the id is claimed now.
        self._dedup.claim(event_id)
        now = self._clock()
        messages = []
        for delivery, (head, tail) in zip(deliveries, parts, strict=True):
            self._seq += 1
            position = format_position(self.epoch, self._seq)
            message = Message(delivery.event, delivery.rooms, event_id, position,
                              head + position.encode() + tail)
            for room in delivery.rooms:
                self._append(room, now, message)
            messages.append(message)
        for message in messages:
            await self.dispatch(message)
        return messages

    async def replay(self, rooms: Iterable[str], position: str) -> Replay:
        parsed = parse_position(position)
        if parsed is None or parsed[0] != self.epoch or parsed[1] > self._seq:
            return Replay([], False)
        after = parsed[1]
        now = self._clock()
        wanted = set(rooms)
        for room in wanted:  # first: a room that expires whole raises the floor
            self._expire(room, now)
        if after < self._expired_floor:
            return Replay([], False)
        found: dict[int, Message] = {}
        for room in wanted:
            if self._trimmed.get(room, 0) > after:
                return Replay([], False)
            for _, message in reversed(self._rooms.get(room, ())):
                seq = message.seq
                if seq <= after:
                    break
                found[seq] = message
        return Replay([found[seq] for seq in sorted(found)], True)

    def _append(self, room: str, now: float, message: Message) -> None:
        history = self._rooms.get(room)
        if history is None:
            history = self._rooms[room] = deque()
        history.append((now, message))
        if len(history) > self._size:
            self._trimmed[room] = history.popleft()[1].seq
            self.trims += 1
        self._expire(room, now)

    def _expire(self, room: str, now: float) -> None:
        history = self._rooms.get(room)
        if history is None:
            return
        cutoff = now - self._ttl
        while history and history[0][0] < cutoff:
            self._trimmed[room] = history.popleft()[1].seq
            self.trims += 1
        if not history:
            # Forget the room; remember that something this old is gone for everyone.
            del self._rooms[room]
            self._expired_floor = max(self._expired_floor, self._trimmed.pop(room, 0))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = self._clock()
            for room in list(self._rooms):
                self._expire(room, now)
