"""The fan-out bus contract shared by every backend (``memory://``, ``redis://``).

``publish`` is the one atomic step of delivery: it de-duplicates the event id, gives each
delivery a position from one monotonic counter, appends it to the history of every
target room and broadcasts it to the listeners of every instance. Either all of that
happens or the call raises, so an ingest path may commit its source offset only after
``publish`` returned.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.dependency import DependencyError
from realtime.routing import Delivery

log = logging.getLogger(__name__)


class BusError(DependencyError):
    """Publishing failed; nothing may be considered delivered (and no id was claimed)."""


def format_position(epoch: str, seq: int) -> str:
    """Positions are made only here and in the Redis script: ``<hex epoch>-<digits>``, so
    they are JSON strings as they are (no escaping)."""
    return f"{epoch}-{seq}"


def parse_position(position: object) -> tuple[str, int] | None:
    """``(epoch, seq)`` of an opaque position string, or ``None`` when malformed."""
    if not isinstance(position, str) or len(position) > 100:
        return None
    epoch, sep, seq = position.rpartition("-")
    if not sep or not epoch or not seq.isdigit():
        return None
    return epoch, int(seq)


def delivered(event_id: str, position: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a client receives: the payload with ``eventId`` and ``position`` first (a
    payload's own keys of those names never come from the router and are left out)."""
    if "eventId" in payload or "position" in payload:
        payload = {k: v for k, v in payload.items() if k != "eventId" and k != "position"}
    return {"eventId": event_id, "position": position, **payload}


@dataclass(slots=True)
class Message:
    """One delivery as seen by gateways: event name, rooms, ids and the encoded body."""

    event: str
    rooms: tuple[str, ...]
    event_id: str
    position: str
    body: bytes

    @property
    def data(self) -> dict[str, Any]:
        """The body decoded (history answers, tests): gateways send ``body`` as it is."""
        data: dict[str, Any] = orjson.loads(self.body)
        return data

    @property
    def seq(self) -> int:
        parsed = parse_position(self.position)
        return parsed[1] if parsed else 0


@dataclass(slots=True)
class Replay:
    """Messages after a position for some rooms, oldest first, and whether that is all of them."""

    messages: list[Message]
    recovered: bool


#: Gets the messages of one publish (an HTTP request's events, a Kafka fetch, a channel
#: message) at once, in order: per-batch work is paid once, not per message.
Listener = Callable[[list[Message]], Awaitable[None]]
#: One event of a batch publish: its id and what to deliver.
Batch = tuple[str, Sequence[Delivery]]


class RoomInterest:
    """Reference counts of rooms that have local subscribers (any gateway).

    Lets a shared bus skip, cheaply, messages for which this instance has no recipient.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def add(self, room: str) -> None:
        self._counts[room] += 1

    def discard(self, room: str) -> None:
        count = self._counts[room] - 1
        if count > 0:
            self._counts[room] = count
        else:
            del self._counts[room]

    def __contains__(self, room: object) -> bool:
        return room in self._counts

    def any(self, rooms: Iterable[str]) -> bool:
        counts = self._counts
        return any(room in counts for room in rooms)

    def __len__(self) -> int:
        return len(self._counts)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._counts))


class FanoutBus(ABC):
    """Base of every backend: listener registry plus the abstract publish/replay contract."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.interest = RoomInterest()
        #: Called after each local dispatch with (messages, seconds); the server records metrics.
        self.on_dispatched: Callable[[list[Message], float], None] | None = None
        self.reconnects = 0
        self.trims = 0

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def dispatch(self, messages: list[Message]) -> None:
        """Hand messages (in order) to every local listener; a failing listener never stops
        the others."""
        if not messages:
            return
        started = time.perf_counter()
        for listener in self._listeners:
            try:
                await listener(messages)
            except Exception:
                log.exception("listener failed for %d message(s) from event %s", len(messages),
                              messages[0].event_id, extra={"eventId": messages[0].event_id})
        if self.on_dispatched is not None:
            self.on_dispatched(messages, time.perf_counter() - started)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the backend (no-op for memory)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources."""

    def status(self) -> tuple[bool, str]:
        """``(ready, reason)`` for ``/readyz``."""
        return True, "ok"

    @abstractmethod
    async def publish(self, event_id: str,
                      deliveries: Sequence[Delivery]) -> list[str] | None:
        """Deliver atomically; the position of each delivery, or ``None`` if ``event_id``
        was published within the window.

        The id is claimed only together with a successful publish: after a failure (an
        exception) a retry with the same id is delivered, not taken for a duplicate.
        """

    async def publish_many(self, batch: Sequence[Batch]) -> list[list[str] | None]:
        """:meth:`publish` for each event of ``batch``, in order (a backend may do it in one
        round trip, then all or nothing); the same id twice in a batch is a duplicate."""
        return [await self.publish(event_id, deliveries) for event_id, deliveries in batch]

    @abstractmethod
    async def replay(self, rooms: Iterable[str], position: str) -> Replay:
        """Everything delivered to ``rooms`` after ``position``, oldest first."""
