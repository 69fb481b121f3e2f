"""The control channel: runs a command on every instance and adds up what each one did.

``memory://`` runs it here. Redis publishes it on its own pub/sub channel
(``{prefix}control``, apart from the event bus): ``PUBLISH`` answers how many instances
are listening, each instance runs the command and publishes its count back on the same
channel, and the sender waits for that many answers (at most ``reply_timeout`` seconds).
So an answer says how many instances were asked and how many answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.exceptions import RedisError

from realtime.bus.channel import listen_forever
from realtime.control.commands import Command, CommandError, parse_command, to_event
from realtime.dependency import DependencyError
from realtime.tasks import cancel_task

log = logging.getLogger(__name__)

#: Runs one command on this instance; returns how many connections it affected.
Handler = Callable[[Command], Awaitable[int]]


@dataclass(slots=True)
class Outcome:
    """Connections affected on every instance that answered, and how many were asked."""

    count: int
    instances: int
    answered: int

    @property
    def complete(self) -> bool:
        return self.answered >= self.instances


@dataclass(eq=False)
class _Pending:
    expected: int
    counts: list[int] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ControlBus(ABC):
    def __init__(self) -> None:
        self.handler: Handler | None = None

    async def run_here(self, command: Command) -> int:
        if self.handler is None:
            return 0
        return await self.handler(command)

    @abstractmethod
    async def broadcast(self, command: Command) -> Outcome:
        """Run ``command`` on every instance (raises :class:`DependencyError` if it cannot
        be sent)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin listening."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop listening."""


class MemoryControlBus(ControlBus):
    """One instance: the command runs here."""

    async def broadcast(self, command: Command) -> Outcome:
        return Outcome(await self.run_here(command), 1, 1)


class RedisControlBus(ControlBus):
    """Commands and answers on ``{prefix}control``; one subscriber connection per instance."""

    def __init__(self, redis: Any, prefix: str, *, reply_timeout: float = 2.0,
                 max_ahead: float = 86400.0) -> None:
        super().__init__()
        self._redis = redis
        self.channel = f"{prefix}control"
        self.reply_timeout = reply_timeout
        self._max_ahead = max_ahead
        self._pending: dict[str, _Pending] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="control-listener")

    async def close(self) -> None:
        await cancel_task(self._listener)

    async def broadcast(self, command: Command) -> Outcome:
        request = secrets.token_hex(8)
        pending = self._pending[request] = _Pending(expected=0)
        message = orjson.dumps({"request": request, "command": to_event(command)})
        try:
            receivers = int(await self._redis.publish(self.channel, message))
        except (RedisError, OSError) as exc:
            self._pending.pop(request, None)
            raise DependencyError(f"redis control publish failed: {type(exc).__name__}: {exc}"
                                  ) from exc
        pending.expected = receivers
        if len(pending.counts) >= receivers:
            pending.done.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.reply_timeout):
                await pending.done.wait()
        self._pending.pop(request, None)
        return Outcome(sum(pending.counts), receivers, len(pending.counts))

    async def _listen_forever(self) -> None:
        await listen_forever(self._redis, self.channel, self._on_raw, name="control listener")

    async def _on_raw(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            request = message["request"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring a malformed control message")
            return
        if "count" in message:  # an answer
            pending = self._pending.get(request)
            if pending is not None:
                pending.counts.append(int(message["count"]))
                if pending.expected and len(pending.counts) >= pending.expected:
                    pending.done.set()
            return
        # In arrival order, one at a time: a join followed by a leave stays in that order.
        await self._run(request, message.get("command"))

    async def _run(self, request: str, event: object) -> None:
        """Run a command sent by any instance (this one too) and answer with the count."""
        try:
            count = await self.run_here(parse_command(event, self._max_ahead))
        except CommandError as exc:
            log.warning("ignoring an invalid control command: %s", exc.message)
            count = 0
        except Exception:
            log.exception("control command failed")
            count = 0
        with contextlib.suppress(RedisError, OSError):
            await self._redis.publish(self.channel,
                                      orjson.dumps({"request": request, "count": count}))
