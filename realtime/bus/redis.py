"""``redis://`` (``rediss://``, ``redis+sentinel://``): the bus shared by all instances.

One Lua script publishes a whole batch (an HTTP request's events, a Kafka fetch; batches
that overlap share the next call) in a handful of commands per batch and one per delivery:

* de-duplication: event ids are members of one set per time bucket (a quarter of the
  window), looked up in the window's buckets with ``SMISMEMBER`` and added with ``SADD``,
  a few commands per batch instead of a ``SET NX`` per event;
* positions: one ``INCRBY`` for the batch; the *k*-th delivery published gets the counter's
  old value + *k*. Nothing position-dependent is built in Lua: a frame travels without its
  position and each reader puts it in (the channel message says where the batch starts; a
  history entry's id is ``<seq>-<ms>``);
* history: one ``XADD MAXLEN ~`` per room of a delivery, the frame as the entry's one field
  (``m``); a room's stream expiry is refreshed once per time bucket per instance, not per
  event (the instance remembers which streams it refreshed, :class:`_Refreshed`);
* one ``PUBLISH`` of the whole batch.

A failing write gives the claimed ids back before the error is raised (so a failed publish
never turns its retry into a "duplicate"); the caller gets :class:`BusError` and (Kafka
consumer) holds its offset. No per-room "last position" key: a replay tells an expired room
from a quiet one by a floor (:meth:`RedisBus._floor`) kept from one mark per time bucket.

A frame is ``header_json \\n body``: the header is ``[event, rooms, eventId, split]`` and the
body is the delivered payload with an empty position, which goes in at byte ``split``
(bodies are compact JSON with ASCII escapes: never a raw newline). A channel message is
``<epoch> <seq before its first delivery>`` and then its frames, one line each for header
and body, so an instance with no local recipient decodes only the small headers. History is
bounded exactly where it is read: :meth:`RedisBus.replay` keeps the newest ``history_size``
entries of a room and none older than ``history_ttl``, like the memory bus. After a listener
reconnect the instance catches up its local rooms from the streams, so a pub/sub outage
loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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
    delivered,
    parse_position,
)
from realtime.bus.channel import listen_forever
from realtime.routing import Delivery
from realtime.tasks import cancel_task
from realtime.transport.payload import encode_many

log = logging.getLogger(__name__)

PUBLISH_SCRIPT = """
-- KEYS: [1] counter, [2] epoch, [3] marks, [4] this bucket's dedup set, [5..] older buckets' sets
-- ARGV: [1] epoch if none, [2] history size, [3] stream TTL (ms), [4] mark bucket (ms),
--       [5] now (ms), [6] channel, [7] dedup set TTL (s), [8] events, [9] streams to refresh,
--       then per event: id, deliveries; per delivery: frame, rooms, the rooms' streams;
--       then the streams whose expiry to refresh.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[1])
  epoch = ARGV[1]
end
local maxlen, ttl_ms, bucket_ms, now = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local count, refresh = tonumber(ARGV[8]), tonumber(ARGV[9])
local CHUNK = 1000  -- arguments per unpack (Lua's stack is bounded)
local ids, starts, i = {}, {}, 10
for e = 1, count do
  ids[e], starts[e] = ARGV[i], i + 2
  i = i + 2
  for _ = 1, tonumber(ARGV[i - 1]) do i = i + 2 + tonumber(ARGV[i + 1]) end
end
local refresh_from = i
-- Which ids a bucket of the window already holds.
local taken = {}
for k = 4, #KEYS do
  for first = 1, count, CHUNK do
    local last = math.min(count, first + CHUNK - 1)
    local found = redis.call('SMISMEMBER', KEYS[k], unpack(ids, first, last))
    for j, member in ipairs(found) do
      if member == 1 then taken[first + j - 1] = true end
    end
  end
end
local fresh, total = {}, 0
for e = 1, count do
  if not taken[e] then
    fresh[#fresh + 1] = ids[e]
    total = total + tonumber(ARGV[starts[e] - 1])
  end
end
local function claim(command)
  for first = 1, #fresh, CHUNK do
    redis.call(command, KEYS[4], unpack(fresh, first, math.min(#fresh, first + CHUNK - 1)))
  end
end
if #fresh > 0 then
  claim('SADD')
  redis.call('EXPIRE', KEYS[4], ARGV[7])
end
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
  local first, frames = seq, {}
  for e = 1, count do
    if not taken[e] then
      local j = starts[e]
      for _ = 1, tonumber(ARGV[j - 1]) do
        local frame, nrooms = ARGV[j], tonumber(ARGV[j + 1])
        seq = seq + 1
        local id = seq .. '-' .. now
        for r = j + 2, j + 1 + nrooms do
          redis.call('XADD', ARGV[r], 'MAXLEN', '~', maxlen, id, 'm', frame)
        end
        frames[#frames + 1] = frame
        j = j + 2 + nrooms
      end
    end
  end
  for r = refresh_from, refresh_from + refresh - 1 do
    redis.call('PEXPIRE', ARGV[r], ttl_ms)
  end
  if #frames > 0 then
    redis.call('PUBLISH', ARGV[6], epoch .. ' ' .. first .. '\\n' .. table.concat(frames, '\\n'))
  end
  local duplicates = {}
  for e = 1, count do duplicates[e] = taken[e] and '1' or '0' end
  return {epoch, first, table.concat(duplicates)}
end
-- A failed write (raised to the caller) gives the ids back: its retry is not a duplicate.
local ok, result = pcall(publish)
if not ok then
  if #fresh > 0 then claim('SREM') end
  return redis.error_reply(type(result) == 'table' and result.err or tostring(result))
end
return result
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


def frame_of(event: str, rooms: tuple[str, ...], event_id: str, body: bytes) -> bytes:
    """A delivery as the channel and a history entry carry it: ``header \\n body``, where
    ``body`` is :func:`~realtime.bus.base.delivered` encoded with an empty position and
    the header says where the position goes."""
    split = body.index(b',"position":"') + 13
    return orjson.dumps([event, rooms, event_id, split]) + b"\n" + body


def channel_message(epoch: str, before: int, frames: Sequence[bytes]) -> bytes:
    """What the script publishes for a batch whose first delivery is ``before + 1``."""
    return f"{epoch} {before}".encode() + b"\n" + b"\n".join(frames)


def _message(header: list[Any], body: bytes, epoch: str, seq: int) -> Message:
    """A frame read back (channel or history), its ``header`` decoded, as the
    :class:`Message` at ``seq``: the position goes into the body at the header's split."""
    event, rooms, event_id, split = header
    if isinstance(split, str):  # written before frames left the position out: it is there
        return Message(event, tuple(rooms), event_id, split, body)
    position = f"{epoch}-{seq}"
    return Message(event, tuple(rooms), event_id, position,
                   body[:split] + position.encode() + body[split:])


class _Refreshed:
    """Streams whose expiry this instance set within the current time bucket: each is
    refreshed once per bucket, not per event. A stream set to expire ``history_ttl`` +
    one bucket from its refresh outlives every entry written until the next refresh by
    ``history_ttl``. Forgotten when Redis comes back with a new epoch (it lost them)."""

    def __init__(self, bucket_ms: int, limit: int = 100_000) -> None:
        self.bucket_ms = bucket_ms
        self.limit = limit
        self._bucket = -1
        self._streams: set[str] = set()

    def due(self, streams: Iterable[str], now_ms: int) -> list[str]:
        """Those of ``streams`` to refresh now (then taken as refreshed)."""
        bucket = now_ms // self.bucket_ms
        if bucket != self._bucket or len(self._streams) > self.limit:
            self._bucket, self._streams = bucket, set()
        done = self._streams
        due = [stream for stream in dict.fromkeys(streams) if stream not in done]
        done.update(due)
        return due

    def forget(self, keep: Iterable[str] = ()) -> None:
        """Take every stream as not refreshed, but ``keep``."""
        self._streams = set(keep)


@dataclass(slots=True)
class _Pending:
    """A caller's batch waiting for the script: each event's id and its deliveries' frames
    and streams, encoded when the caller published; and the caller's answer."""

    events: list[tuple[str, list[tuple[bytes, list[str]]]]]
    answer: asyncio.Future[list[list[str] | None]]


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
        #: Dedup sets: one per quarter window (rounded up); the newest five cover the window.
        self._dedup_bucket = -(-self._dedup // 4)
        self._refreshed = _Refreshed(self._bucket_ms)
        self._published_epoch: bytes | None = None
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
        bodies = iter(encode_many([delivered(event_id, "", delivery.payload)
                                   for event_id, deliveries in batch
                                   for delivery in deliveries]))
        stream = f"{self.prefix}h:"
        events = [(event_id, [(frame_of(d.event, d.rooms, event_id, next(bodies)),
                               [stream + room for room in d.rooms]) for d in deliveries])
                  for event_id, deliveries in batch]
        pending = _Pending(events, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name="redis-publish")
        return await pending.answer

    def _call(self, group: list[_Pending],
              now_ms: int) -> tuple[list[str], list[Any], list[str]]:
        """Keys and arguments of one script call for ``group`` (an id seen earlier in the
        call is left out: a duplicate, answered so without asking Redis), and the streams
        it writes."""
        seen: set[str] = set()
        events: list[Any] = []
        streams: list[str] = []
        for pending in group:
            for event_id, deliveries in pending.events:
                if event_id in seen:
                    continue
                seen.add(event_id)
                events += [event_id, len(deliveries)]
                for frame, rooms in deliveries:
                    events += [frame, len(rooms), *rooms]
                    streams += rooms
        refresh = self._refreshed.due(streams, now_ms)
        bucket = now_ms // 1000 // self._dedup_bucket
        keys = [*self._keys, *(f"{self.prefix}dedup:{self._dedup_bucket}:{bucket - k}"
                               for k in range(5))]
        return keys, [secrets.token_hex(4), self._size, self._ttl * 1000 + self._bucket_ms,
                      self._bucket_ms, now_ms, self.channel, self._dedup + self._dedup_bucket,
                      len(seen), len(refresh), *events, *refresh], streams

    async def _send_queued(self) -> None:
        """One script call at a time (so calls keep their order) for everything queued."""
        group: list[_Pending] = []
        try:
            while self._queue:
                group, self._queue = self._queue, []
                keys, args, streams = self._call(group, int(time.time() * 1000))
                try:
                    epoch, before, duplicates = await self._script(keys=keys, args=args)
                except (RedisError, OSError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    error = BusError(f"redis publish failed: {self.last_error}")
                    error.__cause__ = exc
                    self._refreshed.forget()  # the call may have refreshed none of them
                    _answer(group, error)
                    continue
                except Exception as exc:
                    self._refreshed.forget()
                    _answer(group, exc)
                    continue
                if epoch != self._published_epoch:
                    if self._published_epoch is not None:
                        await self._renew(streams)
                    self._published_epoch = epoch
                self._answer_all(group, epoch.decode(), int(before), duplicates)
                group = []
        finally:  # cancelled (the bus closes): nobody waits for an answer that never comes
            _answer(group + self._queue, BusError("redis bus closed"))
            self._queue = []

    async def _renew(self, streams: list[str]) -> None:
        """Redis lost its data (a new epoch), and with it which streams have an expiry:
        this call's streams get theirs now, the others when next written."""
        self._refreshed.forget()
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in set(streams):
                pipe.pexpire(stream, self._ttl * 1000 + self._bucket_ms)
            with contextlib.suppress(RedisError, OSError):  # else the next write renews them
                await pipe.execute()
                self._refreshed.forget(keep=streams)

    def _answer_all(self, group: list[_Pending], epoch: str, seq: int,
                    duplicates: bytes) -> None:
        """Each caller's positions, given out in call order from ``seq + 1``."""
        flags = iter(duplicates)
        seen: set[str] = set()
        for pending in group:
            results: list[list[str] | None] = []
            for event_id, deliveries in pending.events:
                if event_id in seen or next(flags) == 49:  # b"1": published before
                    results.append(None)
                    continue
                seen.add(event_id)
                results.append([f"{epoch}-{n}"
                                for n in range(seq + 1, seq + 1 + len(deliveries))])
                seq += len(deliveries)
            if not pending.answer.done():
                pending.answer.set_result(results)

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
        return _message(orjson.loads(header), body, epoch, seq)

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
        """Handle one channel message (a batch); skips cheaply what no local room wants. A
        message that is not one of ours (anyone may publish to the channel) is dropped
        with one log line, not taken for a lost connection."""
        try:
            wanted = self._read(data)
        except (ValueError, TypeError, IndexError) as exc:  # JSON errors are ValueErrors
            log.warning("dropped a malformed message on %s: %s: %s", self.channel,
                        type(exc).__name__, exc)
            return
        await self.dispatch(wanted)

    def _read(self, data: bytes) -> list[Message]:
        lines = data.split(b"\n")
        epoch_text, _, before = lines[0].partition(b" ")
        epoch, seq = epoch_text.decode(), int(before)
        if epoch != self._epoch:
            self._epoch, self._last_seq = epoch, 0
        wanted: list[Message] = []
        interest = self.interest
        for index in range(1, len(lines) - 1, 2):
            seq += 1
            if seq <= self._last_seq:
                continue  # already dispatched (catch-up overlap)
            self._last_seq = seq
            header = orjson.loads(lines[index])
            _, rooms, _, _ = header  # a malformed header raises here, wanted or not
            if interest.any(rooms):
                wanted.append(_message(header, lines[index + 1], epoch, seq))
        return wanted

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
