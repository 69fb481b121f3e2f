"""``memory://``: the single-instance bus, with history and de-duplication in process."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from realtime.bus.base import (
    Batch,
    FanoutBus,
    Message,
    Replay,
    delivered,
    parse_position,
)
from realtime.routing import Delivery
from realtime.transport.payload import encode_many

MAX_DEDUP_ENTRIES = 1_000_000
SWEEP_SECONDS = 30.0


class DedupWindow:
    """Keys seen within the last ``window`` seconds, in two generations of sets.

    A key is looked up in the current and the previous generation; a new generation starts
    every ``window`` seconds (or when the current one holds ``max_entries // 2`` keys), and
    the previous one is dropped then. So a key is remembered at least ``window`` seconds
    (less only past ``max_entries``) and at most twice that: two set lookups and one insert
    per key, no per-key deadline to keep or expire."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_DEDUP_ENTRIES) -> None:
        self.window = window
        self._clock = clock
        self._half = max(1, max_entries // 2)
        self.current: set[str] = set()
        self.previous: set[str] = set()
        self._started = clock()

    def rotate(self) -> None:
        """Start a new generation if the current one is ``window`` old (or full)."""
        now = self._clock()
        if now - self._started >= self.window or len(self.current) >= self._half:
            if now - self._started >= 2 * self.window:
                self.current = set()  # nothing was added for a whole window: both expired
            self.previous, self.current, self._started = self.current, set(), now


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
                      deliveries: Sequence[Delivery]) -> list[str] | None:
        return (await self.publish_many([(event_id, deliveries)]))[0]

    async def publish_many(self, batch: Sequence[Batch]) -> list[list[str] | None]:
        """The whole batch, all or nothing: positions are planned and every body encoded
        before any id is claimed, then history and one dispatch of all the messages."""
        dedup = self._dedup
        dedup.rotate()
        current, previous = dedup.current, dedup.previous
        # The first occurrence of an id in the batch publishes; the others are duplicates.
        results: list[list[str] | None] = [None] * len(batch)
        fresh: dict[str, int] = {}
        for index, (event_id, _) in enumerate(batch):
            if event_id not in fresh and event_id not in current and event_id not in previous:
                fresh[event_id] = index
        epoch, seq = self.epoch, self._seq
        planned: list[tuple[str, Delivery, str]] = []
        bodies: list[dict[str, Any]] = []
        for event_id, index in fresh.items():
            positions = results[index] = []
            for delivery in batch[index][1]:
                seq += 1
                position = f"{epoch}-{seq}"
                positions.append(position)
                planned.append((event_id, delivery, position))
                bodies.append(delivered(event_id, position, delivery.payload))
        encoded = encode_many(bodies)
        # Encoded without error: from here nothing can fail, so the ids are claimed now.
        current.update(fresh)
        self._seq = seq
        now = self._clock()
        rooms, size, oldest = self._rooms, self._size, now - self._ttl
        messages: list[Message] = []
        for (event_id, delivery, position), body in zip(planned, encoded, strict=True):
            # History keeps the body: an exact-size copy, since orjson's output keeps the
            # ~4 KB buffer it was written in, however short (README "Performance").
            message = Message(delivery.event, delivery.rooms, event_id, position,
                              b"%b" % (body,))
            entry = (now, message)
            for room in delivery.rooms:
                history = rooms.get(room)
                if history is None:
                    rooms[room] = deque((entry,))
                    continue
                history.append(entry)
                if len(history) > size or history[0][0] < oldest:
                    self._trim(room, history, now)
            messages.append(message)
        await self.dispatch(messages)
        return results

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

    def _trim(self, room: str, history: deque[tuple[float, Message]], now: float) -> None:
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
