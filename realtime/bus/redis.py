"""``redis://`` (``rediss://``, ``redis+sentinel://``): the bus shared by all instances.

One Lua script makes publishing atomic: de-duplicate, take positions from one counter,
append to each room's stream (bounded by length and age), PUBLISH to one channel and only
then claim the event id (so a failed publish never turns its retry into a "duplicate").
A failure raises :class:`BusError`, so the caller (Kafka consumer) holds its offset.

Each instance listens on the channel; a message is ``header_json \\n body`` so an
instance with no local recipient decodes only the small header and skips it. After a
listener reconnect the instance catches up its local rooms from the streams, so a
pub/sub outage loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

import orjson
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from realtime.bus.base import (
    BusError,
    FanoutBus,
    Message,
    Replay,
    body_parts,
    parse_position,
)
from realtime.routing import Delivery

log = logging.getLogger(__name__)

PUBLISH_SCRIPT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[2])
  epoch = ARGV[2]
end
local maxlen, ttl, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local channel, prefix, event_id = ARGV[6], ARGV[7], ARGV[8]
local count, i = tonumber(ARGV[9]), 10
local positions, frames = {}, {}
local trims = 0
for d = 1, count do
  local event, head, tail, nrooms = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  local rooms = {}
  for r = 1, nrooms do
    rooms[r] = ARGV[i]
    i = i + 1
  end
  local seq = redis.call('INCR', KEYS[1])
  local position = epoch .. '-' .. seq
  local body = head .. position .. tail
  local header = cjson.encode({event, rooms, event_id, position})
  for _, room in ipairs(rooms) do
    local stream, meta = prefix .. 'h:' .. room, prefix .. 'm:' .. room
    redis.call('XADD', stream, seq .. '-0', 'b', body, 'e', event, 't', now, 'h', header)
    local excess = redis.call('XLEN', stream) - maxlen
    if excess > 0 then
      local old = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)
      for _, entry in ipairs(old) do redis.call('XDEL', stream, entry[1]) end
      redis.call('HSET', meta, 'trimmed', string.match(old[#old][1], '^(%d+)'))
      trims = trims + #old
    end
    while true do
      local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
      if not first or tonumber(first[2][6]) >= now - ttl * 1000 then break end
      redis.call('XDEL', stream, first[1])
      redis.call('HSET', meta, 'trimmed', string.match(first[1], '^(%d+)'))
      trims = trims + 1
    end
    redis.call('HSET', meta, 'last', seq)
    redis.call('PEXPIRE', stream, ttl * 1000)
    redis.call('EXPIRE', meta, ttl * 2 + 86400)
  end
  frames[d] = header .. '\\n' .. body
  positions[d] = position
end
-- Broadcast and claim the id only once every history write succeeded: a script error
-- above (raised to the caller) leaves the id free for a retry and reaches no client.
for d = 1, count do redis.call('PUBLISH', channel, frames[d]) end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
positions[count + 1] = trims
return positions
"""


def connect(url: str) -> Any:
    """A client for ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://``."""
    if url.startswith("redis+sentinel://"):
        parsed = urlparse(url)
        hosts = [(h.split(":")[0], int(h.split(":")[1]) if ":" in h else 26379)
                 for h in parsed.netloc.split("@")[-1].split(",")]
        parts = [p for p in parsed.path.split("/") if p]
        if not parts:
            raise ValueError("redis+sentinel:// URL needs a service name: .../mymaster[/db]")
        sentinel = Sentinel(hosts, socket_timeout=2.0,  # type: ignore[no-untyped-call]
                            password=parsed.password)
        return sentinel.master_for(
            parts[0], db=int(parts[1]) if len(parts) > 1 else 0, socket_timeout=5.0)
    return aioredis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)


class RedisBus(FanoutBus):
    """History in Redis Streams, broadcast through one pub/sub channel."""

    def __init__(self, url: str, *, prefix: str = "rt:", history_size: int = 1000,
                 history_ttl: float = 3600.0, dedup_window: float = 600.0,
                 client: Any = None) -> None:
        """``client`` shares an existing Redis client (closed with the bus); by default
        the bus connects to ``url`` itself."""
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}bus"
        self._size = history_size
        self._ttl = max(1, int(history_ttl))
        self._dedup = max(1, int(dedup_window))
        # redis-py's typing is a union of bytes and str
        self.redis: Any = client if client is not None else connect(url)
        self._script = self.redis.register_script(PUBLISH_SCRIPT)
        self._listener: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error = "starting"
        self._epoch: str | None = None
        self._last_seq = 0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def status(self) -> tuple[bool, str]:
        """The reason names the error type only; the listener logs where and why."""
        return (True, "redis: connected") if self.connected else (
            False, f"redis unreachable: {self.last_error.split(':', 1)[0]}")

    # --- publish and replay -----------------------------------------------------------

    async def publish(self, event_id: str,
                      deliveries: Sequence[Delivery]) -> list[Message] | None:
        args: list[Any] = [self._dedup, secrets.token_hex(4), self._size, self._ttl,
                           int(time.time() * 1000), self.channel, self.prefix, event_id,
                           len(deliveries)]
        heads_tails = []
        for delivery in deliveries:
            head, tail = body_parts(event_id, delivery.payload)
            heads_tails.append((head, tail))
            args += [delivery.event, head, tail, len(delivery.rooms), *delivery.rooms]
        keys = [f"{self.prefix}seq", f"{self.prefix}epoch", f"{self.prefix}dedup:{event_id}"]
        try:
            result = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            raise BusError(f"redis publish failed: {self.last_error}") from exc
        if result is None:
            return None
        *positions, trims = result
        self.trims += int(trims)
        return [
            Message(d.event, d.rooms, event_id, p.decode(), head + p + tail)
            for d, p, (head, tail) in zip(deliveries, positions, heads_tails, strict=True)
        ]

    async def replay(self, rooms: Iterable[str], position: str) -> Replay:
        parsed = parse_position(position)
        if parsed is None:
            return Replay([], False)
        epoch, after = parsed
        try:
            current_epoch, current_seq = await self.redis.mget(
                f"{self.prefix}epoch", f"{self.prefix}seq")
            if current_epoch is None or current_epoch.decode() != epoch or \
                    after > int(current_seq or 0):
                return Replay([], False)
            found: dict[int, Message] = {}
            for room in set(rooms):
                trimmed, last = await self.redis.hmget(f"{self.prefix}m:{room}",
                                                       "trimmed", "last")
                if trimmed is not None and int(trimmed) > after:
                    return Replay([], False)
                entries = await self.redis.xrange(f"{self.prefix}h:{room}",
                                                  min=f"{after + 1}-0", max="+")
                if not entries and last is not None and int(last) > after:
                    return Replay([], False)  # the room's stream expired meanwhile
                for entry_id, fields in entries:
                    seq = int(entry_id.split(b"-")[0])
                    if seq not in found:
                        found[seq] = self._from_stream(fields, epoch, seq)
        except (RedisError, OSError) as exc:
            raise BusError(f"redis replay failed: {exc}") from exc
        return Replay([found[seq] for seq in sorted(found)], True)

    @staticmethod
    def _from_stream(fields: dict[bytes, bytes], epoch: str, seq: int) -> Message:
        event, rooms, event_id, position = orjson.loads(fields[b"h"])
        return Message(event, tuple(rooms), event_id, position, fields[b"b"])

    # --- listening --------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        delay = 0.1
        first = True
        while True:
            pubsub: Any = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.connected = True
                if not first:
                    self.reconnects += 1
                    await self._catch_up()
                first = False
                delay = 0.1
                while True:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if raw is not None and raw["type"] in ("message", b"message"):
                        await self.on_raw(raw["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("redis listener lost (%s); reconnecting", self.last_error)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(5.0, delay * 2)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def on_raw(self, data: bytes) -> None:
        """Handle one channel message; skips cheaply when no local room is interested."""
        split = data.index(b"\n")
        event, rooms, event_id, position = orjson.loads(data[:split])
        epoch, _, seq_text = position.rpartition("-")
        seq = int(seq_text)
        if epoch != self._epoch:
            self._epoch, self._last_seq = epoch, 0
        elif seq <= self._last_seq:
            return  # already dispatched (catch-up overlap)
        self._last_seq = seq
        if not self.interest.any(rooms):
            return
        await self.dispatch(Message(event, tuple(rooms), event_id, position, data[split + 1:]))

    async def _catch_up(self) -> None:
        """After a reconnect, dispatch what local rooms missed while we were deaf."""
        if not len(self.interest):
            return
        current = await self.redis.get(f"{self.prefix}epoch")
        if current is None:
            return  # nothing was published since Redis came back
        if current.decode() != self._epoch:
            # Redis lost its data: everything of the new epoch is new to us.
            self._epoch, self._last_seq = current.decode(), 0
        rooms = list(self.interest)
        replay = await self.replay(rooms, f"{self._epoch}-{self._last_seq}")
        for message in replay.messages:
            if message.seq > self._last_seq:
                self._last_seq = message.seq
                await self.dispatch(message)
        if replay.messages:
            log.info("caught up %d message(s) after reconnect", len(replay.messages))
