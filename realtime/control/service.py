"""Runs control commands: once per request (store the revocation, broadcast), and on every
instance (end or move this instance's live connections, through each gateway)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from realtime.auth.identity import Identity
from realtime.control.bus import ControlBus, Outcome
from realtime.control.commands import Command, Disconnect, MoveRooms, Revoke
from realtime.state.revocations import Revocations, matches

log = logging.getLogger(__name__)

REVOKED = "token_revoked"


class Gateway(Protocol):
    """What a gateway offers the control commands, for its own live connections."""

    async def end(self, match: Callable[[Identity], bool], reason: str,
                  reconnect: bool) -> int:
        """End every authenticated connection whose identity ``match``es, telling the client
        ``{reason, reconnect}`` first; returns how many ended."""
        ...

    async def move(self, user_id: str, join: Sequence[str], leave: Sequence[str]) -> int:
        """Join/leave rooms for every connection of ``user_id`` (no replay); returns how many
        connections there were."""
        ...


class Control:
    def __init__(self, bus: ControlBus, revocations: Revocations,
                 gateways: Sequence[Gateway]) -> None:
        self.bus = bus
        self.revocations = revocations
        self.gateways = list(gateways)
        bus.handler = self.run_here

    async def run(self, command: Command) -> Outcome:
        """Run ``command`` on every instance; a revocation is stored first, so no instance
        can let the token in again after it ended its connections. Raises
        :class:`DependencyError` when Redis cannot take it."""
        if isinstance(command, Revoke):
            if command.token_id is not None:
                await self.revocations.revoke_token(command.token_id, command.expires_at)
            else:
                assert command.user_id is not None and command.issued_before is not None
                await self.revocations.revoke_user(command.user_id, command.issued_before)
        return await self.bus.broadcast(command)

    async def run_here(self, command: Command) -> int:
        """This instance's part of ``command``."""
        if isinstance(command, Disconnect):
            user_id = command.user_id
            return await self._end(lambda identity: identity.user_id == user_id,
                                   command.reason, command.reconnect)
        if isinstance(command, MoveRooms):
            count = 0
            for gateway in self.gateways:
                count += await gateway.move(command.user_id, command.join, command.leave)
            return count
        if command.token_id is not None:
            self.revocations.remember_token(command.token_id, command.expires_at)
        elif command.user_id is not None and command.issued_before is not None:
            self.revocations.remember_user(command.user_id, command.issued_before)
        token_id, owner, before = command.token_id, command.user_id, command.issued_before
        return await self._end(lambda identity: matches(identity, token_id, owner, before),
                               REVOKED, False)

    async def _end(self, match: Callable[[Identity], bool], reason: str,
                   reconnect: bool) -> int:
        count = 0
        for gateway in self.gateways:
            count += await gateway.end(match, reason, reconnect)
        if count:
            log.info("control: ended %d connection(s) (%s)", count, reason,
                     extra={"reason": reason})
        return count
