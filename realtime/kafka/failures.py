"""Telling an outage from a bad record when a Kafka hand-off fails.

An outage (Redis or the broker unreachable, a timeout) is worth retrying: the record is
fine and will go through once the dependency is back. Anything else raised while decoding,
routing or encoding one record is that record's fault: retrying it would stall its
partition forever, so it is dead-lettered instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from realtime.bus import BusError
from realtime.routing import RoutingError

#: Failures of a dependency rather than of the record being handled.
TRANSIENT: tuple[type[BaseException], ...] = (BusError, RedisError, KafkaError, OSError,
                                              TimeoutError)
#: Longest error text kept in a dead letter's ``x-dlq-error`` header and in the log.
MAX_ERROR_TEXT = 1000


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one record goes to the dead-letter topic instead of the bus."""

    reason: str
    message: str

    @property
    def unexpected(self) -> bool:
        return self.reason == "internal_error"


def is_transient(exc: BaseException) -> bool:
    """True for an outage (retry the same record later), False for a bad record.

    A wrapper raised ``from`` an outage (a backend's own "unavailable" error) is an outage.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TRANSIENT):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def refusal_for(exc: Exception) -> Refusal:
    """The dead-letter reason for a record-specific failure (``internal_error`` if unforeseen)."""
    if isinstance(exc, RoutingError):
        return Refusal(exc.reason, exc.message[:MAX_ERROR_TEXT])
    text = f"{type(exc).__name__}: {exc}"
    return Refusal("internal_error", text[:MAX_ERROR_TEXT])
