"""Control commands as Kafka events (``REALTIME_KAFKA_CONTROL_TOPIC``).

Service-only by topic: every record of the control topic is a command, and no other topic
can carry one (a ``DISCONNECT_USER`` on an event topic is an unknown event type and goes to
the DLQ). Who may write the control topic is decided by the broker's ACLs, as for the
event topics. A bad command raises :class:`CommandError` (a ``RoutingError``), which the
consumer dead-letters like any bad event; an outage raises and is retried.
"""

from __future__ import annotations

from realtime.control.commands import parse_command
from realtime.control.service import Control


class ControlEvents:
    def __init__(self, control: Control, max_ahead: float) -> None:
        self.control = control
        self.max_ahead = max_ahead

    async def handle(self, event: object) -> None:
        await self.control.run(parse_command(event, self.max_ahead))
