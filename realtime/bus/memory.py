"""``memory://``: the single-instance bus, with history and de-duplication in process."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence

from realtime.bus.base import (
    Batch,
    FanoutBus,
    Message,
    Replay,
    body_parts,
    parse_position,
)
from realtime.routing import Delivery

MAX_DEDUP_ENTRIES = 1_000_000
SWEEP_SECONDS = 30.0


class DedupWindow:
    """Keys seen within the last ``window`` seconds (bounded in count, oldest evicted).

    A batch asks :meth:`expire` once, then reads and writes :attr:`keys` directly: the
    expiry walk is paid per batch, not per key."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_DEDUP_ENTRIES) -> None:
        self.window = window
        self._clock = clock
        self._max = max_entries
        #: Key → deadline, oldest first (O(1) at the front, unlike a dict's).
        self.keys: OrderedDict[str, float] = OrderedDict()

    def expire(self) -> None:
        """Forget keys whose window has passed (and the oldest beyond ``max_entries``)."""
        now = self._clock()
        expiry = self.keys
        while expiry:
            oldest = next(iter(expiry))
            if expiry[oldest] > now and len(expiry) < self._max:
                break
            del expiry[oldest]


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
        return (await self.publish_many([(event_id, deliveries)]))[0]

    async def publish_many(self, batch: Sequence[Batch]) -> list[list[Message] | None]:
        """The whole batch, all or nothing: every body is encoded before any id is claimed,
        then positions, history and one dispatch of all the messages."""
        dedup = self._dedup
        dedup.expire()
        seen = dedup.keys
        fresh: list[tuple[str, Sequence[Delivery], list[tuple[bytes, bytes]]]] = []
        in_batch: set[str] = set()
        for event_id, deliveries in batch:
            if event_id in seen or event_id in in_batch:
                continue
            in_batch.add(event_id)
            fresh.append((event_id, deliveries,
                          [body_parts(event_id, delivery.payload) for delivery in deliveries]))
        # Encoded without error: from here nothing can fail, so the ids are claimed now.
        now = self._clock()
        deadline = now + dedup.window
        epoch, seq, rooms, size, oldest = self.epoch, self._seq, self._rooms, self._size, \
            now - self._ttl
        published: dict[str, list[Message]] = {}
        everything: list[Message] = []
        for event_id, deliveries, parts in fresh:
            seen[event_id] = deadline
            messages = published[event_id] = []
            for delivery, (head, tail) in zip(deliveries, parts, strict=True):
                seq += 1
                position = f"{epoch}-{seq}"
                message = Message(delivery.event, delivery.rooms, event_id, position,
                                  head + position.encode() + tail)
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
            everything.extend(messages)
        self._seq = seq
        await self.dispatch(everything)
        # The first occurrence of an id in the batch publishes; the others are duplicates.
        return [published.pop(event_id, None) for event_id, _ in batch]

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
