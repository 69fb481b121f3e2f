"""Live messages around a history replay, so a resuming subscriber sees each event once.

A subscriber that resumes from a position gets the history after it, then live events.
Two races would break "in order, once":

* a live message arriving while the replay is read and sent would overtake it — so live
  messages are *held* until the replay has been sent, then only those it did not cover go;
* history is written before its pub/sub message reaches this instance, so the live stream
  can still carry a message the replay already sent — so after the replay, live messages
  at or below its last position are *dropped* until the live stream passes it.

Positions come from one counter per epoch (see :mod:`realtime.bus.base`), so "covered"
is a comparison, not a set lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from realtime.bus import Message
from realtime.bus.base import parse_position


@dataclass(slots=True)
class CatchUp:
    """The catch-up state of one resuming subscriber."""

    held: list[Message] | None = field(default_factory=list)
    last: tuple[str, int] | None = None

    def admit(self, message: Message) -> bool:
        """Whether to deliver a live ``message`` now (otherwise it is held or a duplicate)."""
        if self.held is not None:
            self.held.append(message)
            return False
        if self._covers(message):
            return False
        self.last = None  # the live stream has passed the replay
        return True

    def finish(self, replayed: list[Message]) -> list[Message]:
        """End holding after ``replayed`` (oldest first) was sent; the held messages to send."""
        if replayed:
            self.last = parse_position(replayed[-1].position)
        held, self.held = self.held or [], None
        return [m for m in held if not self._covers(m)]

    @property
    def done(self) -> bool:
        """Nothing left to hold or drop: the subscriber is an ordinary live one again."""
        return self.held is None and self.last is None

    def _covers(self, message: Message) -> bool:
        if self.last is None:
            return False
        position = parse_position(message.position)
        return position is not None and position[0] == self.last[0] and position[1] <= self.last[1]
