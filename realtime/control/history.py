"""A room's retained history, read through the bus's replay API only (never written).

``bus.replay([room], position)`` gives everything after ``position`` when nothing after it
was trimmed (``recovered``), else nothing. When the history does not reach back to
``since``, the oldest position it does reach back to is found by searching the positions
between ``since`` and the newest one (replay is monotone in the position: once recovered,
every later position is too), and the retained events are replayed from there.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realtime.bus import FanoutBus, Message
from realtime.bus.base import format_position, parse_position

#: What ``since`` may be: a position as delivered (epoch, dash, sequence number).
POSITION = re.compile(r"[A-Za-z0-9]{1,64}-[0-9]{1,18}")

#: The bus's newest position as ``(epoch, seq)``; ``None`` before anything was published.
Head = Callable[[], Awaitable[tuple[str, int] | None]]


@dataclass(frozen=True, slots=True)
class History:
    """Events oldest first (at most ``limit``); ``reaches_back``: nothing after ``since``
    (or, without it, nothing ever) was dropped; ``more``: the limit cut the list."""

    messages: list[Message]
    reaches_back: bool
    more: bool


class HistoryError(ValueError):
    """``since`` is not a position this server hands out."""


class RoomHistory:
    def __init__(self, bus: FanoutBus, head: Head) -> None:
        self.bus = bus
        self.head = head

    async def read(self, room: str, since: str | None, limit: int) -> History:
        """Raises :class:`HistoryError` for a malformed ``since``, ``BusError`` when the bus
        is unavailable."""
        after = 0
        same_epoch = True
        parsed = None
        if since is not None:
            parsed = parse_position(since) if POSITION.fullmatch(since) else None
            if parsed is None:
                raise HistoryError("'since' must be a position as delivered (e.g. 3f2a9c1b-42)")
        head = await self.head()
        if head is None:
            return History([], parsed is None, False)
        epoch, newest = head
        if parsed is not None:
            same_epoch = parsed[0] == epoch and parsed[1] <= newest
            after = parsed[1] if same_epoch else 0
        found = await self.bus.replay([room], format_position(epoch, after))
        reaches_back = found.recovered and same_epoch
        if not found.recovered:
            found = await self.bus.replay([room], format_position(epoch, await self._oldest(
                room, epoch, after, newest)))
        messages = list(found.messages)
        return History(messages[:limit], reaches_back, len(messages) > limit)

    async def _oldest(self, room: str, epoch: str, low: int, high: int) -> int:
        """The smallest position in (``low``, ``high``] from which a replay is complete."""
        async def complete(seq: int) -> bool:
            return (await self.bus.replay([room], format_position(epoch, seq))).recovered

        step = 1
        probe = high - 1
        while probe > low and await complete(probe):  # search down, doubling the step
            high = probe
            step *= 2
            probe = high - step
        low = max(low, probe)
        while high - low > 1:  # low is incomplete, high complete
            middle = (low + high) // 2
            if await complete(middle):
                high = middle
            else:
                low = middle
        return high
