"""Short full collections: the heap frozen out of the collector's way after connection ramps.

A full CPython collection walks every tracked object, and a server's heap is mostly objects
that live as long as the process or a connection (session, rooms, transport): 0.4-0.5 s per
collection at 5,000 connections (``gc.callbacks``), which is the p99 latency of anything
that waits behind it. Once a ramp of new sessions has calmed down, the heap is frozen
(``gc.freeze``): full collections then walk only what came after. Reference counting still
frees everything frozen that is not in a cycle (a closed connection: see
:mod:`realtime.transport.teardown`, whose thaw after a disconnect storm also hands frozen
cyclic garbage back to the collector).
"""

from __future__ import annotations

import asyncio
import gc


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
