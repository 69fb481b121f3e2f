"""Property/fuzz suite of the transport layer: generated and mutated input from hostile clients.

One server (a subprocess, so its log can be read) takes Engine.IO and Socket.IO packets,
long-polling bodies and WebSocket frames — valid, truncated, bit-flipped, with lying
lengths, reserved opcodes, deep JSON, huge ack ids, binary attachments out of place —
from unauthenticated and authenticated clients. Per input: the server answers, or closes
that connection with a proper close frame or status, never hangs, never logs a traceback.
Throughout (a watcher process, see :mod:`support.watcher`): a well-behaved client keeps
receiving what is published to it and ``/healthz`` answers within 100 ms. After: RSS
back near its baseline. Bounded to about a minute by the ``max_examples`` below.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.hostile import (
    Closed,
    LogReader,
    Polling,
    RawWebSocket,
    connect_packet,
    frame,
    log_problems,
    open_websocket,
)
from support.server import SOCKETIO_CONNECTIONS, ServerProcess, metric, token

TESTS = Path(__file__).parent
WATCHER = "watcher"
#: The fuzzing clients' token (minted once: it must never show in the log).
FUZZED = token("fuzzed")
#: Close codes a server may fail a connection with (RFC 6455 §7.4.1); never 1011 or none.
CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009}
#: How long the server may take to answer or close after an input.
PROMPT = 2.0
RSS_MARGIN_KB = 30 * 1024

FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


# --- the server, the watcher and the invariants -------------------------------------------


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@dataclass
class Target:
    """The server under fuzz, its watcher, and the loop every example runs on."""

    loop: asyncio.AbstractEventLoop
    server: ServerProcess
    watcher: subprocess.Popen[bytes]
    log: LogReader
    baseline_kb: int = 0
    connections: int = 0  # opened by the fuzz tests
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def run(self, coro: Coroutine[Any, Any, None]) -> None:
        self.loop.run_until_complete(coro)

    def fuzz(self, example: Callable[..., Coroutine[Any, Any, None]],
             **strategies: st.SearchStrategy[Any]) -> None:
        """Run ``example`` on generated arguments, then check every invariant."""

        @FUZZ
        @given(**strategies)
        def run_example(**arguments: Any) -> None:
            self.run(example(self, **arguments))

        run_example()
        self.run(self.check())

    def watch(self) -> dict[str, Any]:
        """The watcher's status (blocks for one line: it answers at once)."""
        assert self.watcher.stdin is not None and self.watcher.stdout is not None
        self.watcher.stdin.write(b"status\n")
        self.watcher.stdin.flush()
        status: dict[str, Any] = orjson.loads(self.watcher.stdout.readline())
        return status

    def log_lines(self) -> list[str]:
        """New log lines; fails on a traceback, an error, a non-JSON line or a token."""
        lines = self.log.new_lines()
        self.lines += lines
        problems = log_problems(lines, secrets=(FUZZED, FUZZED.split(".")[2]))
        assert problems == [], problems
        return lines

    async def check(self) -> None:
        """Every invariant of the suite, as of now."""
        self.log_lines()
        assert len(self.lines) <= self.connections, \
            f"{len(self.lines)} log lines for {self.connections} connections"
        status = self.watch()
        assert status["connected"] and not status["disconnected"], status
        assert status["received"] > 0 and status["lost"] == [], status
        assert status["slow"] == [] and status["probe_failures"] == [], status
        assert status["probes"] > 0, status
        deadline = time.monotonic() + 10  # fuzz sessions gone, memory back near its baseline
        while True:
            clients, rss = await metric(self.url, SOCKETIO_CONNECTIONS), rss_kb(self.pid)
            if clients == 1 and rss <= self.baseline_kb + RSS_MARGIN_KB:
                break
            assert time.monotonic() < deadline, \
                f"{clients} clients (1 expected), RSS {rss} kB, baseline {self.baseline_kb} kB"
            await asyncio.sleep(0.2)
        print(f"\nfuzz: {self.connections} connections, {len(self.lines)} log lines, "
              f"/healthz worst {status['worst'] * 1000:.0f} ms over {status['probes']} probes, "
              f"{status['received']}/{status['published']} ticks, "
              f"RSS {self.baseline_kb} -> {rss} kB")


def _start_watcher(url: str) -> subprocess.Popen[bytes]:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "support.watcher", url, token(WATCHER), WATCHER],
        env={**os.environ, "PYTHONPATH": str(TESTS)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE)
    assert watcher.stdout is not None
    ready = watcher.stdout.readline()
    assert orjson.loads(ready) == {"ready": True}, ready
    return watcher


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One server for the module, started once; its watcher; a loop of the module's own."""
    server = ServerProcess({"REALTIME_LOG_LEVEL": "INFO",
                            "REALTIME_RATE_LIMIT_PER_SECOND": "100000",
                            "REALTIME_RATE_LIMIT_BURST": "100000"})
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(server.start())
        fuzz = Target(loop, server, _start_watcher(server.url), LogReader(server.log_path))
        time.sleep(1.0)  # warm: the watcher connected, publishing and probing
        fuzz.baseline_kb = rss_kb(fuzz.pid)
        yield fuzz
        assert fuzz.watcher.stdin is not None
        fuzz.watcher.stdin.close()
        fuzz.watcher.wait(10)
    finally:
        server.kill()
        loop.close()


# --- generated input -----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=10)

EVENT_NAMES = st.sampled_from([
    "authenticate", "refresh_token", "subscribe_order_updates", "unsubscribe_order_updates",
    "user_update_request", "resume", "no_such_event", "connect", "disconnect", "*",
    "disconnecting", "connect_error", "message", "newListener"]) | st.text(max_size=10)
NAMESPACES = st.sampled_from(["", "/,", "/admin,", "/nope,", f"/{FUZZED},"]) | st.text(
    max_size=8).map(lambda name: f"/{name},")
ACK_IDS = st.none() | st.integers(0, 999) | st.integers(10**15, 10**40)


@st.composite
def deep_json(draw: st.DrawFn) -> str:
    depth = draw(st.integers(1, 3000))
    if draw(st.booleans()):
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def placeholder(num: Any) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


@st.composite
def socketio_messages(draw: st.DrawFn) -> list[str | bytes]:
    """Engine.IO messages carrying one Socket.IO packet, its attachments, or misplaced ones."""
    namespace = draw(NAMESPACES)
    ack = draw(ACK_IDS)
    ack_text = "" if ack is None else str(ack)
    kind = draw(st.sampled_from(["connect", "disconnect", "event", "deep", "ack", "binary",
                                 "stray binary", "connect_error", "raw"]))
    if kind == "connect":
        return ["40" + namespace + draw(st.sampled_from(
            ["", orjson.dumps({"token": FUZZED}).decode(),
             orjson.dumps(draw(json_values)).decode()]))]
    if kind == "disconnect":
        return ["41" + namespace + draw(st.sampled_from(["", "[]", "{}"]))]
    if kind in ("event", "ack", "connect_error"):
        payload = [draw(EVENT_NAMES), *draw(st.lists(json_values, max_size=3))] \
            if kind == "event" else draw(st.lists(json_values, max_size=3))
        code = {"event": "42", "ack": "43", "connect_error": "44"}[kind]
        return [code + namespace + ack_text + orjson.dumps(payload).decode()]
    if kind == "deep":
        return ["42" + namespace + ack_text + '["no_such_event",' + draw(deep_json()) + "]"]
    if kind == "binary":
        declared = draw(st.integers(0, 12))
        nums = draw(st.lists(st.integers(-1, 12) | st.text(max_size=2), min_size=1,
                             max_size=3))
        sent = draw(st.integers(0, 3))
        body = orjson.dumps([draw(EVENT_NAMES), *map(placeholder, nums)]).decode()
        tail: list[str | bytes] = [draw(st.binary(max_size=16)) for _ in range(sent)]
        if draw(st.booleans()):
            tail.insert(draw(st.integers(0, len(tail))), "42" + orjson.dumps(["x"]).decode())
        return ["45" + f"{declared}-" + namespace + ack_text + body, *tail]
    if kind == "stray binary":
        return [draw(st.binary(max_size=16))]
    return ["4" + draw(st.text(max_size=30) | st.just(FUZZED))]


ENGINE_CONTROL = st.sampled_from(["", "0", "1", "2", "2probe", "3", "3probe", "5", "6", "7",
                                  "8", "9", "b", "noop", "\u00e9"])


@st.composite
def engine_messages(draw: st.DrawFn) -> list[str | bytes]:
    """A few Engine.IO messages: Socket.IO packets, control packets, or garbage."""
    messages: list[str | bytes] = []
    for _ in range(draw(st.integers(1, 3))):
        choice = draw(st.integers(0, 9))
        if choice < 6:
            messages += draw(socketio_messages())
        elif choice < 8:
            messages.append(draw(ENGINE_CONTROL))
        else:
            messages.append(draw(st.text(max_size=20) | st.binary(max_size=20)
                                 | st.just("9" + FUZZED)))
    return [draw(mutated(m)) for m in messages]


@st.composite
def mutated(draw: st.DrawFn, message: str | bytes) -> str | bytes:
    """``message`` as is, or truncated, bit-flipped, cut in the middle or doubled."""
    how = draw(st.sampled_from(["same", "same", "same", "truncate", "flip", "cut", "double"]))
    data = message.encode() if isinstance(message, str) else message
    if how == "same" or not data:
        return message
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        data = data[:at]
    elif how == "flip":
        data = data[:at] + bytes((data[at] ^ 1 << draw(st.integers(0, 7)),)) + data[at + 1:]
    elif how == "cut":
        data = data[:at] + data[draw(st.integers(at, len(data))):]
    else:
        data += data
    if isinstance(message, bytes):
        return data
    return data.decode(errors="replace")


def engine_verdict(message: str | bytes) -> bool | None:
    """What the protocol says of one Engine.IO message on its own: ``False`` must fail the
    session (not a packet type a client sends), ``None`` depends on the rest."""
    if isinstance(message, str) and (message[:1] not in ("1", "2", "3", "4", "5", "6")):
        return False
    return None


AUTH = st.sampled_from(["engine only", "no token", "token"])


# --- the clients ---------------------------------------------------------------------------


async def authenticate(ws: RawWebSocket, auth: str) -> None:
    if auth == "no token":
        assert (await ws.connect()).startswith("40{")
    elif auth == "token":
        assert (await ws.connect({"token": FUZZED})).startswith("40{")


async def alive(ws: RawWebSocket) -> bool:
    """Ping at the Engine.IO level: ``True`` if answered, ``False`` if the server closed the
    connection (with an allowed close frame). Fails if it does neither promptly."""
    nonce = secrets.token_hex(4)
    try:
        await ws.send("2" + nonce)
        await ws.until("3" + nonce, timeout=PROMPT)
        return True
    except Closed:
        assert ws.close_code in CLOSE_CODES, ws.close_code
        return False


async def packets_over_websocket(target: Target, auth: str,
                                 messages: list[str | bytes]) -> None:
    ws = await open_websocket(target.url)
    target.connections += 1
    try:
        await authenticate(ws, auth)
        for message in messages:
            await ws.send(message)
        open_after = await alive(ws)
        first = engine_verdict(messages[0])
        if first is not None:
            assert open_after is first, (messages[0], ws.messages)
    finally:
        ws.abort()
    target.log_lines()


async def well_formed_event(target: Target, auth: str, name: str, args: list[Any],
                            ack: int) -> None:
    """A well-formed EVENT with an ack id from a connected client gets an ack (an answer
    or a refusal); from a session without a Socket.IO CONNECT it closes the session."""
    ws = await open_websocket(target.url)
    target.connections += 1
    try:
        await authenticate(ws, auth)
        await ws.send(f"42{ack}" + orjson.dumps([name, *args]).decode())
        if auth == "engine only":
            assert await ws.ended(PROMPT) in CLOSE_CODES
        else:
            answer = await ws.until(f"43{ack}[", timeout=PROMPT)
            assert isinstance(orjson.loads(answer[2 + len(str(ack)):]), list)
            # A failed `authenticate` ends the session (auth_error); nothing else does.
            assert await alive(ws) or (name == "authenticate" and auth == "no token")
    finally:
        ws.abort()
    target.log_lines()


def polling_body(messages: list[str | bytes]) -> bytes:
    return b"\x1e".join(m.encode() if isinstance(m, str) else b"b" + base64.b64encode(m)
                        for m in messages)


async def polling_body_example(target: Target, auth: str, messages: list[str | bytes],
                               raw: bytes | None) -> None:
    async with aiohttp.ClientSession() as http:
        session = await Polling(http, target.url).open()
        target.connections += 1
        if auth == "token":
            assert (await session.post(connect_packet({"token": FUZZED})))[0] == 200
            assert (await session.get())[1].startswith("40{")
        status, _ = await session.post(polling_body(messages) if raw is None else raw)
        assert status in (200, 400), status
        nonce = secrets.token_hex(4)
        pinged, _ = await session.post("2" + nonce)
        if status == 400:  # an invalid payload closes the session at once
            assert pinged == 400
        if pinged == 200:
            got, payload = await session.get(timeout=PROMPT)
            packets = payload.split("\x1e")
            assert got == 400 or "3" + nonce in packets or packets[-1] == "1", (got, payload)
        await session.close()
    target.log_lines()


@dataclass
class Header:
    """The first two bytes of a frame, as RFC 6455 §5.2 reads them."""

    opcode: int
    fin: bool
    rsv: int
    masked: bool
    length: int

    def must_fail(self) -> bool:
        """Whether this frame, first on a connection, fails it whatever follows: a reserved
        bit or opcode, no mask, a continuation of nothing, a long or fragmented control."""
        control = self.opcode >= 0x8
        return bool(self.rsv or not self.masked or self.opcode not in (0, 1, 2, 8, 9, 10)
                    or self.opcode == 0 or (control and (not self.fin or self.length > 125)))

    @classmethod
    def of(cls, stream: bytes) -> Header | None:
        if len(stream) < 2:
            return None
        first, second = stream[0], stream[1]
        return cls(first & 0xF, bool(first & 0x80), first >> 4 & 0x7, bool(second & 0x80),
                   second & 0x7F)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """A byte stream of one to four client frames, any field possibly wrong."""
    stream = b""
    for _ in range(draw(st.integers(1, 4))):
        opcode = draw(st.sampled_from([0x0, 0x1, 0x1, 0x2, 0x8, 0x9, 0xA]) | st.integers(0, 15))
        masked = draw(st.integers(0, 9)) > 0
        payload = draw(engine_messages())[0]
        stream += frame(opcode, payload.encode() if isinstance(payload, str) else payload,
                        fin=draw(st.integers(0, 4)) > 0,
                        rsv=draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4, 7])),
                        mask=draw(st.binary(min_size=4, max_size=4)) if masked else None,
                        length=draw(st.none() | st.none() | st.integers(0, 200) | st.sampled_from(
                            [126, 65_535, 65_536, 2**63 - 1, 2**64 - 1])))
    return stream


async def frames_example(target: Target, auth: str, stream: bytes, cut: int | None,
                         flip: int | None, writes: int) -> None:
    if cut is not None:
        stream = stream[:cut]
    if flip is not None and stream:
        at = flip // 8 % len(stream)
        stream = stream[:at] + bytes((stream[at] ^ 1 << flip % 8,)) + stream[at + 1:]
    header = Header.of(stream)
    ws = await open_websocket(target.url)
    target.connections += 1
    try:
        await authenticate(ws, auth)
        step = len(stream) // writes + 1
        for start in range(0, len(stream), step):
            await ws.write(stream[start:start + step])
        ws.shutdown()  # then the server must end the connection too
        code = await ws.ended(PROMPT)
        if header is not None and header.must_fail():
            assert code == 1002, (code, header, stream[:40])
        else:  # 1005: an empty close frame, the answer to the client's own empty close
            assert code in (None, 1005, *CLOSE_CODES), (code, stream[:40])
    finally:
        ws.abort()
    target.log_lines()


# --- the tests: examples, then every invariant ---------------------------------------------


def test_engineio_and_socketio_packets_over_websocket(target: Target) -> None:
    target.fuzz(packets_over_websocket, auth=AUTH, messages=engine_messages())


def test_well_formed_events_are_answered_and_keep_the_connection(target: Target) -> None:
    target.fuzz(well_formed_event, auth=AUTH, name=EVENT_NAMES,
                args=st.lists(json_values, max_size=2), ack=st.integers(0, 10**15 - 1))


def test_long_polling_bodies(target: Target) -> None:
    target.fuzz(polling_body_example, auth=st.sampled_from(["engine only", "token"]),
                messages=engine_messages(), raw=st.none() | st.binary(max_size=64))


def test_websocket_frames(target: Target) -> None:
    target.fuzz(frames_example, auth=AUTH, stream=frames(),
                cut=st.none() | st.integers(0, 10_000), flip=st.none() | st.integers(0, 80_000),
                writes=st.integers(1, 3))
