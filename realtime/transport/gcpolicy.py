"""Short full collections: the heap frozen out of the collector's way after connection ramps.

A full CPython collection walks every tracked object, and a server's heap is mostly objects
that live as long as the process or a connection (session, rooms, transport): 0.4-0.5 s per
collection at 5,000 connections (``gc.callbacks``), which is the p99 latency of anything
that waits behind it. Once a ramp of new sessions has calmed down, the heap is frozen
(``gc.freeze``): full collections then walk only what came after. Reference counting still
frees everything frozen that is not in a cycle (a closed connection: see
:mod:`realtime.transport.teardown`, whose thaw after a disconnect storm also hands frozen
cyclic garbage back to the collector).

The same holds for the rest of the process (:func:`settle_after_startup`): the modules,
settings and app built at start-up are frozen once the server listens, and whatever
survived a long full collection is frozen right after it (:class:`FreezeAfterFullCollection`),
so no later full collection walks it again (measured with ``loadtest.ceiling``: see README
"Performance").
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

#: ``gc.set_threshold`` for a server: young collections every 10,000 net allocations instead
#: of 700 (a burst of events allocates tens of thousands of short-lived objects, nearly all
#: freed by reference counting: a collection every 700 of them mostly walks survivors).
THRESHOLDS = (10_000, 20, 10)
#: A full collection at least this long freezes what survived it.
LONG_FULL_COLLECTION = 0.005


def settle_after_startup() -> None:
    """Once the server listens: collect, freeze the start-up heap, tune the thresholds and
    freeze after long full collections from now on (process-wide; ``realtime serve`` only)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    FREEZE_AFTER_FULL.install()


class FreezeAfterFullCollection:
    """After a full collection of ``long`` seconds or more, freezes what survived it.

    A full collection just freed every unreachable cycle, so what is left is live and
    mostly long-lived (sessions, rooms, history): freezing it costs nothing (``gc.freeze``
    only moves list heads) and the next full collection walks only what came after.
    Frozen objects are still freed by reference counting; a cycle among them that dies
    later waits for an unfreeze (:class:`realtime.transport.teardown.StormFreeze`).
    """

    def __init__(self, long: float = LONG_FULL_COLLECTION) -> None:
        self.long = long
        self.freezes = 0
        self._started = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            self._installed = True
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._installed:
            self._installed = False
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif time.perf_counter() - self._started >= self.long:
            self.freezes += 1
            gc.freeze()


FREEZE_AFTER_FULL = FreezeAfterFullCollection()


class HeapFreezer:
    """Freezes the heap after ``ramp`` new sessions followed by ``calm`` seconds without one."""

    def __init__(self, ramp: int = 1000, calm: float = 1.0) -> None:
        self.ramp = ramp
        self.calm = calm
        self.freezes = 0
        self._new = 0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def opened(self) -> None:
        """A new session; counts towards the ramp."""
        loop = asyncio.get_running_loop()
        self._new += 1
        self._last = loop.time()
        if self._new >= self.ramp and self._timer is None:
            self._timer = loop.call_later(self.calm, self._settle)

    def _settle(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._last
        if quiet < self.calm:
            self._timer = loop.call_later(self.calm - quiet, self._settle)
            return
        self._timer = None
        self._new = 0
        self.freezes += 1
        gc.freeze()
