"""A resuming subscriber sees each event once: held during the replay, duplicates dropped after.

The duplicate case is the race the instance-kill test hit: Redis history already holds an
event whose pub/sub message has not reached this instance yet, so the replay sends it and
then the live stream delivers it again.
"""

from __future__ import annotations

from realtime.bus import Message
from realtime.gateways.catchup import CatchUp


def message(seq: int, epoch: str = "e1") -> Message:
    return Message("tick", ("user:1",), f"id{seq}", f"{epoch}-{seq}", b"{}")


def test_live_messages_during_the_replay_are_held_and_the_replayed_ones_not_resent() -> None:
    catch_up = CatchUp()
    assert not catch_up.admit(message(5))
    assert not catch_up.admit(message(7))
    held = catch_up.finish([message(4), message(5), message(6)])
    assert [m.seq for m in held] == [7]


def test_live_messages_the_replay_covered_are_dropped_until_the_stream_passes_it() -> None:
    catch_up = CatchUp()
    assert catch_up.finish([message(4), message(5), message(6)]) == []
    assert not catch_up.done
    assert not catch_up.admit(message(5))  # pub/sub lagging behind history
    assert not catch_up.admit(message(6))
    assert catch_up.admit(message(7))
    assert catch_up.done
    assert catch_up.admit(message(3))  # done: ordinary live subscriber again


def test_a_new_epoch_is_never_treated_as_covered() -> None:
    catch_up = CatchUp()
    catch_up.finish([message(9)])
    assert catch_up.admit(message(1, epoch="e2"))
    assert catch_up.done


def test_an_empty_replay_releases_everything_held() -> None:
    catch_up = CatchUp()
    catch_up.admit(message(2))
    assert [m.seq for m in catch_up.finish([])] == [2]
    assert catch_up.done
