"""Mass disconnects without stalling the event loop.

When thousands of clients vanish at once the loop learns of every lost connection in the
same iteration. :class:`TeardownThrottle` spreads the teardowns over iterations (fed by
:class:`ThrottledLoss` or the lean WebSocket protocol), :class:`StormFreeze` keeps the
cyclic GC off the heap meanwhile, and :func:`drop_tracebacks` makes sure a dropped
aiohttp WebSocket is freed by reference counting rather than left as a cycle.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Callable


class StormFreeze:
    """Keeps CPython's cyclic GC off the heap while a disconnect storm is torn down.

    A full collection over 10,000 live connections takes 0.5-0.9 s here, and teardown
    churn is what triggers one. From ``storm`` closes within a second until ``calm``
    seconds pass without one, the heap is frozen (``gc.freeze``): the collector skips it,
    while reference counting still frees each closed connection (see
    :func:`drop_tracebacks`); ``gc.unfreeze`` then hands back a much smaller heap.
    """

    def __init__(self, storm: int = 200, calm: float = 1.0) -> None:
        self.storm = storm
        self.calm = calm
        self._window_start = 0.0
        self._count = 0
        self._last = 0.0
        self.frozen = False

    def closing(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._last = loop.time()
        if self.frozen:
            return
        if now - self._window_start > 1.0:
            self._window_start, self._count = now, 0
        self._count += 1
        if self._count >= self.storm:
            self.frozen = True
            gc.freeze()
            loop.call_later(self.calm, self._thaw)

    def _thaw(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last
        if quiet < self.calm:
            loop.call_later(self.calm - quiet, self._thaw)
            return
        self.frozen = False
        gc.unfreeze()


class TeardownThrottle:
    """Runs at most ``per_tick`` connection losses per loop iteration.

    When thousands of clients vanish at once, the event loop learns of every lost
    connection in the same iteration; tearing them all down there (aiohttp's close
    handling, engine.io's and Socket.IO's disconnect, room bookkeeping) would stall the
    loop for seconds, health checks and live traffic included. Spreading the losses over
    iterations keeps each one short.
    """

    def __init__(self, per_tick: int = 100) -> None:
        self.per_tick = per_tick
        self.freeze = StormFreeze()
        self._used = 0
        self._queued: deque[tuple[Callable[..., object], tuple[object, ...]]] = deque()
        self._scheduled = False

    def later(self, callback: Callable[..., object], *args: object) -> None:
        """Call ``callback(*args)`` in this iteration if there is room, else in a later one."""
        self.freeze.closing()
        self._schedule()
        if not self._queued and self._used < self.per_tick:
            self._used += 1
            callback(*args)
        else:
            self._queued.append((callback, args))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._next_tick)

    def _next_tick(self) -> None:
        self._scheduled = False
        self._used = 0
        while self._queued and self._used < self.per_tick:
            callback, args = self._queued.popleft()
            self._used += 1
            callback(*args)
        if self._used:
            self._schedule()


class ThrottledLoss(asyncio.Protocol):
    """Stands between a transport and aiohttp's protocol; hands connection losses to a
    :class:`TeardownThrottle` and forwards everything else unchanged."""

    def __init__(self, inner: asyncio.Protocol, throttle: TeardownThrottle) -> None:
        self.inner = inner
        self.throttle = throttle

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.throttle.later(self.inner.connection_lost, exc)


def drop_tracebacks(exc: BaseException | None) -> None:
    """Cut an exception chain from its frames.

    aiohttp keeps the error that ended a WebSocket (a write to the closing transport,
    chained to the read's EOF) on the response; its traceback's frames hold the response,
    so every dropped connection would be a reference cycle left for the cyclic GC (~40
    objects each, and a long full collection after a mass disconnect). Without the
    tracebacks, reference counting frees the connection at once.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
