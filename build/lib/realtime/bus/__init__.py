"""Fan-out bus: delivers routed events to the gateways of every instance.

The backend is chosen by URL scheme, as in encode/broadcaster: ``memory://`` for a
single instance, ``redis://`` (``rediss://``, ``redis+sentinel://``) to scale out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime.bus.base import BusError, FanoutBus, Listener, Message, Replay, RoomInterest
from realtime.bus.memory import MemoryBus

if TYPE_CHECKING:
    from realtime.settings import Settings

__all__ = ["BusError", "FanoutBus", "Listener", "MemoryBus", "Message", "Replay",
           "RoomInterest", "create_bus"]


def create_bus(settings: Settings) -> FanoutBus:
    """The bus for ``settings.bus_url``."""
    url = settings.bus_url
    if url.startswith("memory://"):
        return MemoryBus(history_size=settings.history_size,
                         history_ttl=settings.history_ttl_seconds,
                         dedup_window=settings.dedup_window_seconds)
    from realtime.bus.redis import RedisBus

    return RedisBus(url, prefix=settings.redis_prefix, history_size=settings.history_size,
                    history_ttl=settings.history_ttl_seconds,
                    dedup_window=settings.dedup_window_seconds)
