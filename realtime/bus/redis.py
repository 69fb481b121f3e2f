"""``redis://`` (``rediss://``, ``redis+sentinel://``): the bus shared by all instances.

One Lua script publishes a whole batch (an HTTP request's events, a Kafka fetch) at once:
claim the event ids (``SET NX``: de-duplication in one command), take positions from one
counter (one ``INCRBY``), append to each room's stream (bounded by ``XADD MAXLEN ~``: no
trimming loops), refresh each room's expiry once per batch, and PUBLISH the batch as one
channel message. No per-room "last position" key: a replay tells an expired room from a
quiet one by a floor (:meth:`RedisBus._floor`) kept from one mark per time bucket. A
failing write gives the claimed ids back before the error is raised (so a failed publish
never turns its retry into a "duplicate"); the caller gets :class:`BusError` and (Kafka
consumer) holds its offset. Headers and bodies are encoded here, in Python, around the
position the script fills in: the script does no JSON.

A channel message is one or more ``header_json \\n body`` pairs joined by ``\\n`` (bodies are
compact JSON with ASCII escapes: never a raw newline), so an instance with no local
recipient decodes only the small headers and skips the rest. A room's history entry is that
pair as one field (``m``), its time the second part of the entry id (``<seq>-<ms>``): one
field per ``XADD``, the script builds each frame once. History is bounded exactly
where it is read: :meth:`RedisBus.replay` keeps the newest ``history_size`` entries of a
room and none older than ``history_ttl``, like the memory bus. After a listener reconnect
the instance catches up its local rooms from the streams, so a pub/sub outage loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import hiredis
import orjson
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisError

from realtime.bus.base import (
    Batch,
    BusError,
    FanoutBus,
    Message,
    Replay,
    body_parts,
    parse_position,
)
from realtime.bus.channel import listen_forever
from realtime.routing import Delivery
from realtime.tasks import cancel_task

log = logging.getLogger(__name__)

PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[2])
  epoch = ARGV[2]
end
local dedup_ttl, maxlen, ttl_ms, bucket_ms = ARGV[1], ARGV[3], ARGV[4], tonumber(ARGV[5])
local now, channel, count = ARGV[6], ARGV[7], tonumber(ARGV[8])
-- Keys come named (dedup keys, room streams): the script builds no key names.
-- Pass 1: claim each event id (SET NX: one command), note where its deliveries start.
local events, claimed, total, i = {}, {}, 0, 9
for e = 1, count do
  local key, ndeliveries = ARGV[i], tonumber(ARGV[i + 1])  -- the event's dedup key
  local start = i + 2
  i = start
  for _ = 1, ndeliveries do i = i + 4 + tonumber(ARGV[i + 3]) end
  local taken = not redis.call('SET', key, '1', 'NX', 'EX', dedup_ttl)
  events[e] = {ndeliveries, start, taken}
  if not taken then
    claimed[#claimed + 1] = key
    total = total + ndeliveries
  end
end
-- Pass 2: positions, history (a room's expiry refreshed once per batch), one channel
-- message. Headers and bodies come encoded: the position goes in between.
local function publish()
  local seq = 0
  if total > 0 then
    seq = redis.call('INCRBY', KEYS[1], total) - total
    -- The counter before the first batch of each time bucket (see RedisBus._floor).
    local bucket = math.floor(tonumber(now) / bucket_ms)
    if redis.call('HSETNX', KEYS[3], bucket, seq) == 1 then
      local oldest = bucket - math.ceil(tonumber(ttl_ms) / bucket_ms) - 3
      for _, old in ipairs(redis.call('HKEYS', KEYS[3])) do
        if tonumber(old) < oldest then redis.call('HDEL', KEYS[3], old) end
      end
    end
  end
  local results, frames, written = {}, {}, {}
  for e = 1, count do
    local ndeliveries, j, taken = unpack(events[e])
    if taken then
      results[e] = false
    else
      local positions = {}
      for d = 1, ndeliveries do
        local nrooms = tonumber(ARGV[j + 3])
        seq = seq + 1
        -- The entry id carries the time (its second part); the entry is the channel
        -- frame itself: header, newline, body, the position written into both.
        local id, position = seq .. '-' .. now, epoch .. '-' .. seq
        local frame = ARGV[j] .. position .. ARGV[j + 1] .. position .. ARGV[j + 2]
        for r = j + 4, j + 3 + nrooms do
          redis.call('XADD', ARGV[r], 'MAXLEN', '~', maxlen, id, 'm', frame)
          written[ARGV[r]] = true
        end
        frames[#frames + 1] = frame
        positions[d] = position
        j = j + 4 + nrooms
      end
      results[e] = positions
    end
  end
  for stream in pairs(written) do redis.call('PEXPIRE', stream, ttl_ms) end
  if #frames > 0 then redis.call('PUBLISH', channel, table.concat(frames, '\\n')) end
  return results
end
-- A failed write (raised to the caller) gives the ids back: its retry is not a duplicate.
local ok, results = pcall(publish)
if not ok then
  for _, key in ipairs(claimed) do redis.call('DEL', key) end
  return redis.error_reply(type(results) == 'table' and results.err or tostring(results))
end
return results
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
    # A burst (a reconnect storm) waits for a free connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=100, timeout=5.0, socket_timeout=5.0, socket_connect_timeout=2.0)
    pool.connection_class = packed_in_c(pool.connection_class)
    return aioredis.Redis.from_pool(pool)


class _HiredisPacking:
    """Commands packed by hiredis, in C. redis-py's asyncio connections pack in Python, an
    argument at a time (about a microsecond each; a 100-event publish script call has
    ~800): the bytes are the same (``tests/test_seams.py``). Anything hiredis does not take
    (a command name with a space, an argument that is not str/bytes/int/float) goes the
    stock way."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if (b" " not in name) if isinstance(name, bytes) else (" " not in name):
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


def packed_in_c(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` (whichever redis-py picked for the URL) packing with hiredis."""
    return type(f"HiredisPacked{connection_class.__name__}",
                (_HiredisPacking, connection_class), {})


@dataclass(slots=True)
class _Pending:
    """A caller's batch waiting for the script: its encoded arguments and its answer."""

    batch: Sequence[Batch]
    answer: asyncio.Future[list[list[str] | None]]
    args: list[Any] = field(default_factory=list)
    parts: list[list[tuple[bytes, bytes]]] = field(default_factory=list)

    def messages(self, results: list[list[bytes] | None]) -> list[list[str] | None]:
        """The script's positions for this batch (``None``: a duplicate)."""
        return [None if positions is None else [p.decode() for p in positions]
                for positions in results]


def _answer(group: list[_Pending], error: BaseException) -> None:
    for pending in group:
        if not pending.answer.done():
            pending.answer.set_exception(error)


def _entry_time(entry_id: bytes, fields: dict[bytes, bytes]) -> int:
    """When a history entry was written (ms): its id's second part (older entries: ``t``)."""
    stamp = fields.get(b"t")
    return int(stamp) if stamp is not None else int(entry_id.split(b"-")[1])


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
        # Marks per time bucket, about a hundred within the history's age bound.
        self._bucket_ms = max(100, self._ttl * 1000 // 100)
        self._keys = [f"{prefix}seq", f"{prefix}epoch", f"{prefix}marks:{self._bucket_ms}"]
        self._listener: asyncio.Task[None] | None = None
        self.connected = False
        self.last_error = "starting"
        self._epoch: str | None = None
        self._last_seq = 0
        self._queue: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="redis-listener")

    async def close(self) -> None:
        await cancel_task(self._listener)
        await cancel_task(self._sender)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def status(self) -> tuple[bool, str]:
        """The reason names the error type only; the listener logs where and why."""
        return (True, "redis: connected") if self.connected else (
            False, f"redis unreachable: {self.last_error.split(':', 1)[0]}")

    # --- publish and replay -----------------------------------------------------------

    async def publish(self, event_id: str,
                      deliveries: Sequence[Delivery]) -> list[str] | None:
        return (await self.publish_many([(event_id, deliveries)]))[0]

    async def publish_many(self, batch: Sequence[Batch]) -> list[list[str] | None]:
        """The whole batch in one script call: all of it is published, or none (raises).

        Batches that arrive while a call is on its way (concurrent requests, several Kafka
        partitions) wait and go together in the next call, in arrival order: one round trip
        and one channel message for all of them. Encoding errors are raised here, to this
        caller alone, before its batch joins the queue."""
        if not batch:
            return []
        pending = _Pending(batch, asyncio.get_running_loop().create_future())
        # Keys are named here (the script does no string building for them).
        dedup, stream = f"{self.prefix}dedup:", f"{self.prefix}h:"
        for event_id, deliveries in batch:
            pending.args += [dedup + event_id, len(deliveries)]
            heads_tails = []
            for delivery in deliveries:
                head, tail = body_parts(event_id, delivery.payload)
                heads_tails.append((head, tail))
                header = orjson.dumps([delivery.event, delivery.rooms, event_id, ""])
                pending.args += [header[:-2], header[-2:] + b"\n" + head, tail,
                                 len(delivery.rooms),
                                 *[stream + room for room in delivery.rooms]]
            pending.parts.append(heads_tails)
        self._queue.append(pending)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="redis-publish")
        return await pending.answer

    async def _send_queued(self) -> None:
        """One script call at a time (so calls keep their order) for everything queued."""
        group: list[_Pending] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                args: list[Any] = [self._dedup, secrets.token_hex(4), self._size,
                                   self._ttl * 1000, self._bucket_ms, int(time.time() * 1000),
                                   self.channel, sum(len(p.batch) for p in group)]
                for pending in group:
                    args += pending.args
                try:
                    results = await self._script(keys=self._keys, args=args)
                except (RedisError, OSError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    error = BusError(f"redis publish failed: {self.last_error}")
                    error.__cause__ = exc
                    _answer(group, error)
                    continue
                except Exception as exc:
                    _answer(group, exc)
                    continue
                start = 0
                for pending in group:
                    end = start + len(pending.batch)
                    if not pending.answer.done():
                        pending.answer.set_result(pending.messages(results[start:end]))
                    start = end
                group = []
        finally:  # cancelled (the bus closes): nobody waits for an answer that never comes
            _answer(group + self._queue, BusError("redis bus closed"))
            self._queue = []

    async def replay(self, rooms: Iterable[str], position: str) -> Replay:
        parsed = parse_position(position)
        if parsed is None:
            return Replay([], False)
        epoch, after = parsed
        try:
            current_epoch, current_seq = await self.redis.mget(
                f"{self.prefix}epoch", f"{self.prefix}seq")
            if current_epoch is None or current_epoch.decode() != epoch or \
                    after > int(current_seq or 0) or after < await self._floor(current_seq):
                return Replay([], False)
            found: dict[int, Message] = {}
            for room in set(rooms):
                entries = await self._history(room, after)
                if entries is None:
                    return Replay([], False)
                for seq, fields in entries:
                    if seq not in found and seq <= int(current_seq or 0):  # one snapshot
                        found[seq] = self._from_stream(fields, epoch, seq)
        except (RedisError, OSError) as exc:
            raise BusError(f"redis replay failed: {exc}") from exc
        return Replay([found[seq] for seq in sorted(found)], True)

    async def _history(self, room: str,
                       after: int) -> list[tuple[int, dict[bytes, bytes]]] | None:
        """A room's entries after ``after``, or ``None`` when some of them are gone: past the
        newest ``history_size``, older than ``history_ttl``, or trimmed from the stream."""
        stream = f"{self.prefix}h:{room}"
        newest = await self.redis.xrevrange(stream, max="+", min=f"{after + 1}-0",
                                            count=self._size + 1)
        if len(newest) > self._size:
            return None  # more than the history keeps came after `after`
        entries = [(int(entry_id.split(b"-")[0]), fields) for entry_id, fields in reversed(newest)]
        if newest and _entry_time(*newest[-1]) < (time.time() - self._ttl) * 1000:
            return None  # the oldest of them has aged out
        if await self._trimmed_after(stream, after, entries):
            return None
        return entries

    async def _floor(self, current_seq: bytes | None) -> int:
        """Every position up to this one may belong to a room whose stream expired.

        A stream expires ``history_ttl`` after its last entry, so whatever expired was
        published before ``now - history_ttl``, when the counter stood below the mark of
        any later time bucket (the script keeps the counter before each bucket's first
        batch). With no such mark, nothing was published since: the floor is the counter.
        Like the memory bus's floor, one instead of a "last position" key per room."""
        marks = await self.redis.hgetall(self._keys[2])
        cutoff = (time.time() - self._ttl) * 1000 // self._bucket_ms + 1  # +1: clock skew
        later = [int(seq) for bucket, seq in marks.items() if int(bucket) > cutoff]
        return min(later) if later else int(current_seq or 0)

    async def _trimmed_after(self, stream: str, after: int,
                             entries: list[tuple[int, dict[bytes, bytes]]]) -> bool:
        """Whether ``XADD MAXLEN ~`` may have dropped an entry later than ``after``.

        Only the oldest entries are dropped, all of them before the stream's first one: when
        that first one is among ``entries`` and the stream ever held more, the dropped ones
        may lie after ``after`` (answered conservatively: a client then reloads its state)."""
        if not entries:
            return False
        try:
            info = await self.redis.xinfo_stream(stream)
        except RedisError:
            return False  # expired just now: nothing was trimmed that is not aged out
        first = info.get("first-entry")
        if first is None or int(first[0].split(b"-")[0]) != entries[0][0]:
            return False  # older entries than ours are still there: nothing of ours is gone
        added = info.get("entries-added")
        if added is None:  # Redis 6: no count of entries ever added
            return int(info.get("length", 0)) >= self._size and entries[0][0] > after + 1
        return int(added) > int(info.get("length", 0)) and entries[0][0] > after + 1

    @staticmethod
    def _from_stream(fields: dict[bytes, bytes], epoch: str, seq: int) -> Message:
        frame = fields.get(b"m")
        if frame is None:  # written by 0.x before the frame field: h, b and t
            header, body = fields[b"h"], fields[b"b"]
        else:
            header, _, body = frame.partition(b"\n")
        event, rooms, event_id, position = orjson.loads(header)
        return Message(event, tuple(rooms), event_id, position, body)

    # --- listening --------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        first = True

        async def subscribed() -> None:
            nonlocal first
            self.connected = True
            if not first:
                self.reconnects += 1
                await self._catch_up()
            first = False

        def lost(exc: Exception) -> None:
            self.connected = False
            self.last_error = f"{type(exc).__name__}: {exc}"

        await listen_forever(self.redis, self.channel, self.on_raw, name="redis listener",
                             on_subscribed=subscribed, on_lost=lost)

    async def on_raw(self, data: bytes) -> None:
        """Handle one channel message (a batch); skips cheaply what no local room wants."""
        lines = data.split(b"\n")
        wanted: list[Message] = []
        interest = self.interest
        for index in range(0, len(lines) - 1, 2):
            event, rooms, event_id, position = orjson.loads(lines[index])
            epoch, _, seq_text = position.rpartition("-")
            seq = int(seq_text)
            if epoch != self._epoch:
                self._epoch, self._last_seq = epoch, 0
            elif seq <= self._last_seq:
                continue  # already dispatched (catch-up overlap)
            self._last_seq = seq
            if interest.any(rooms):
                wanted.append(Message(event, tuple(rooms), event_id, position, lines[index + 1]))
        await self.dispatch(wanted)

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
        missed = [message for message in replay.messages if message.seq > self._last_seq]
        if missed:
            self._last_seq = missed[-1].seq
        await self.dispatch(missed)
        if replay.messages:
            log.info("caught up %d message(s) after reconnect", len(replay.messages))
