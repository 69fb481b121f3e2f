"""Mass-disconnect machinery: losses spread over loop iterations, GC kept off the heap.

(The end-to-end figures come from ``python -m loadtest.mass_disconnect``.)
"""

from __future__ import annotations

import asyncio
import gc

from realtime.metrics import GC_PAUSES, Metrics
from realtime.transport.gcpolicy import FreezeAfterFullCollection, HeapFreezer
from realtime.transport.teardown import StormFreeze, TeardownThrottle


async def test_losses_beyond_the_per_tick_budget_wait_for_later_iterations() -> None:
    throttle = TeardownThrottle(per_tick=3)
    calls: list[int] = []
    for n in range(10):
        throttle.later(calls.append, n)
    handled = [len(calls)]
    while len(calls) < 10 and len(handled) < 20:
        await asyncio.sleep(0)  # one loop iteration
        handled.append(len(calls))
    assert handled == [3, 6, 9, 10]  # three per iteration
    assert calls == list(range(10))  # every loss handled, in order


async def test_a_storm_freezes_the_heap_until_it_calms_down() -> None:
    freeze = StormFreeze(storm=5, calm=0.2)
    gc.unfreeze()  # a server of an earlier test may have stopped while frozen
    try:
        for _ in range(4):
            freeze.closing()
        assert not freeze.frozen and gc.get_freeze_count() == 0
        freeze.closing()
        assert freeze.frozen and gc.get_freeze_count() > 0
        await asyncio.sleep(0.1)
        freeze.closing()  # still storming: stays frozen past the first calm period
        await asyncio.sleep(0.15)
        assert freeze.frozen
        await asyncio.sleep(0.3)
        assert not freeze.frozen and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_the_heap_is_frozen_once_a_ramp_of_sessions_has_calmed() -> None:
    freezer = HeapFreezer(ramp=3, calm=0.05)
    frozen_before = gc.get_freeze_count()
    try:
        for _ in range(2):
            freezer.opened()
        await asyncio.sleep(0.1)
        assert freezer.freezes == 0  # no ramp yet
        freezer.opened()
        await asyncio.sleep(0.02)
        freezer.opened()  # still ramping: waits for calm again
        await asyncio.sleep(0.04)
        assert freezer.freezes == 0
        await asyncio.sleep(0.05)
        assert freezer.freezes == 1 and gc.get_freeze_count() >= frozen_before
    finally:
        gc.unfreeze()


def test_what_survives_a_long_full_collection_is_frozen_and_the_pause_is_exported() -> None:
    policy = FreezeAfterFullCollection(long=0.0)  # every full collection counts as long
    metrics = Metrics()
    gc.unfreeze()
    policy.install()
    try:
        survivors = [[n] for n in range(20_000)]  # tracked objects the collection keeps
        gc.collect()
        assert policy.freezes == 1 and gc.get_freeze_count() >= len(survivors)
        gc.collect(0)  # a young collection never freezes
        assert policy.freezes == 1
    finally:
        policy.uninstall()
        gc.unfreeze()
    text = metrics.render().decode()
    longest = GC_PAUSES.longest[2]
    assert longest > 0
    assert f'realtime_gc_longest_pause_seconds{{generation="2"}} {longest}' in text
    assert 'realtime_gc_pause_seconds_count{generation="2"}' in text
