"""Fan-out bus: delivers routed events to the gateways of every instance.

The backend is chosen by URL scheme, as in encode/broadcaster (see
:func:`realtime.backends.create_backends`): ``memory://`` for a single instance,
``redis://`` (``rediss://``, ``redis+sentinel://``) to scale out.
"""

from realtime.bus.base import BusError, FanoutBus, Listener, Message, Replay, RoomInterest
from realtime.bus.memory import MemoryBus

__all__ = ["BusError", "FanoutBus", "Listener", "MemoryBus", "Message", "Replay",
           "RoomInterest"]
