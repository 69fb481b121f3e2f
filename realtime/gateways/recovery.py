"""Socket.IO connection-state recovery: private session ids and their records, kept current.

A recoverable session gets a ``pid`` in its CONNECT answer and its record
(:class:`~realtime.state.sessions.SessionRecord`) in the session store. Writes are
journaled: the latest pending operation per pid (save, lost, forget) is flushed by one
task in one round trip, so a burst of connects is a few pipelines, and operations on a
pid reach the store in order. Live records are rewritten every ``window / 4`` seconds
with a time to live of ``window`` plus that period: a session whose instance died is
recoverable for at most that long, one lost on a running instance for exactly
``window``; one ended on purpose (client or server DISCONNECT) is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

from realtime.auth import Identity
from realtime.bus.base import format_position
from realtime.dependency import DependencyError
from realtime.state.sessions import SessionRecord, SessionStore, orders_of
from realtime.tasks import cancel_task

log = logging.getLogger(__name__)

Head = Callable[[], Awaitable[tuple[str, int] | None]]
#: What to do with a pid's record: keep it while live, start its window, or drop it.
Operation = tuple[Literal["live", "lost", "forget"], SessionRecord | None]
MAX_PID_LENGTH = 64
CLOSE_TIMEOUT = 2.0
#: Live records renewed per loop iteration.
RENEW_CHUNK = 500


class Recovery:
    """Where recoverable sessions are remembered; ``window`` 0 turns recovery off."""

    def __init__(self, store: SessionStore, window: float, head: Head) -> None:
        self.store = store
        self.window = window
        self.head = head
        self.renew_every = max(0.5, window / 4)
        #: The live sessions' (pid, record) pairs, rewritten every ``renew_every`` seconds.
        self.live: Callable[[], Iterable[tuple[str, SessionRecord]]] = lambda: ()
        self._pending: dict[str, Operation] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self._writing = asyncio.Lock()  # one flush at a time: a pid's writes stay in order

    @property
    def enabled(self) -> bool:
        return self.window > 0

    @staticmethod
    def new_pid() -> str:
        return secrets.token_urlsafe(18)

    async def start_position(self) -> str | None:
        """The bus's newest position: a new session missed nothing before it."""
        try:
            head = await self.head()
        except DependencyError as exc:
            log.warning("recovery: bus position unavailable: %s", exc)
            return None
        return format_position(*head) if head is not None else None

    async def replay_from(self, offset: object, record: SessionRecord) -> str | None:
        """Where a recovered session's replay starts: the client's offset (the last position
        it received), else where the session began; ``None``: nothing was ever published."""
        if isinstance(offset, str):
            return offset
        if record.since is not None:
            return record.since
        try:
            head = await self.head()
        except DependencyError:
            return "unknown"  # not a position: the replay says "not recovered"
        return format_position(head[0], 0) if head is not None else None

    async def find(self, pid: object, identity: Identity) -> SessionRecord | None:
        """The record of ``pid`` if it is ``identity``'s user's and has not expired."""
        if not isinstance(pid, str) or not pid or len(pid) > MAX_PID_LENGTH:
            return None
        await self.flush()  # a reconnect may be faster than the journal
        try:
            record = await self.store.get(pid)
        except DependencyError as exc:
            log.warning("recovery: session store unavailable: %s", exc)
            return None
        if record is None or record.user_id != identity.user_id:
            return None
        return record

    async def recent_orders(self, user_id: str) -> list[str] | None:
        """Order ids of the user's recent sessions (``None``: the store cannot say)."""
        await self.flush()
        try:
            return orders_of(await self.store.of_user(user_id))
        except DependencyError as exc:
            log.warning("recovery: session store unavailable: %s", exc)
            return None

    def remember(self, pid: str, record: SessionRecord) -> None:
        self._queue(pid, ("live", record))

    def lost(self, pid: str, record: SessionRecord) -> None:
        """The connection dropped: recoverable for ``window`` seconds from now."""
        self._queue(pid, ("lost", record))

    def forget(self, pid: str) -> None:
        self._queue(pid, ("forget", None))

    def _queue(self, pid: str, operation: Operation) -> None:
        if self.enabled:
            self._pending[pid] = operation
            self._wake.set()

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Write what is pending (sessions that began just before a shutdown), then stop;
        the live records stay as last written, so clients recover on the next instance."""
        await cancel_task(self._task)
        self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.flush()
        self._pending.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        renew_at = loop.time() + self.renew_every
        while True:
            try:
                async with asyncio.timeout(max(0.0, renew_at - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                renew_at = loop.time() + self.renew_every
                await self._renew()
            await self.flush()

    async def _renew(self) -> None:
        """Rewrite the live records, ``RENEW_CHUNK`` at a time with the loop free between
        chunks (10,000 at once held it for tens of milliseconds: every client's latency)."""
        for count, (pid, record) in enumerate(self.live(), 1):
            self._pending.setdefault(pid, ("live", record))
            if count % RENEW_CHUNK == 0:
                await self.flush()
                await asyncio.sleep(0)

    async def flush(self) -> None:
        """Write every pending operation (one round trip per kind)."""
        async with self._writing:
            await self._flush()

    async def _flush(self) -> None:
        self._wake.clear()
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        live = [(pid, rec) for pid, (kind, rec) in pending.items() if kind == "live" and rec]
        lost = [(pid, rec) for pid, (kind, rec) in pending.items() if kind == "lost" and rec]
        forgotten = [pid for pid, (kind, _) in pending.items() if kind == "forget"]
        try:
            await self.store.save(live, self.window + self.renew_every)
            await self.store.save(lost, self.window)
            await self.store.delete(forgotten)
        except DependencyError as exc:
            if not self._failing:
                log.warning("recovery: session store unavailable, sessions may not be "
                            "recoverable: %s", exc)
            self._failing = True
            return
        self._failing = False
