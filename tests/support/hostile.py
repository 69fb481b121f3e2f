"""Raw clients for hostile-client and fuzz tests: they send exactly the bytes a test asks for.

A library client refuses to send a truncated frame or a packet it considers invalid, and
hides when the server really closed the TCP connection; these do neither. Also a
``/healthz`` latency probe and a reader of a server's log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

#: Engine.IO path and query of every raw client.
EIO_PATH = "/socket.io/?EIO=4&transport="
#: A non-trivial masking key, so an unmasking bug shows.
MASK = b"\x12\x34\x56\x78"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          mask: bytes | None = MASK, length: int | None = None) -> bytes:
    """A client frame with every field chosen by the caller: ``length`` may lie about the
    payload, ``rsv`` sets the reserved bits, ``mask=None`` sends it unmasked."""
    size = len(payload) if length is None else length
    head = bytes(((0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF,))
    flag = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes((flag | size,))
    elif size < 1 << 16:
        head += bytes((flag | 126,)) + size.to_bytes(2, "big")
    else:
        head += bytes((flag | 127,)) + size.to_bytes(8, "big")
    if mask is None:
        return head + payload
    key = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return head + mask + bytes(a ^ b for a, b in zip(payload, key, strict=True))


def message_frame(data: str | bytes) -> bytes:
    """One masked text (``str``) or binary (``bytes``) message."""
    return frame(0x1, data.encode()) if isinstance(data, str) else frame(0x2, data)


def event_packet(name: str, *args: Any, ack: int | None = None) -> str:
    """The Engine.IO message of a Socket.IO EVENT (``42[...]``), ``ack`` as its id."""
    return "42" + ("" if ack is None else str(ack)) + orjson.dumps([name, *args]).decode()


def connect_packet(auth: dict[str, Any] | None = None) -> str:
    return "40" + (orjson.dumps(auth).decode() if auth is not None else "")


class Closed(Exception):
    """The server ended the connection; ``code`` is its close frame's code (1005 for a close
    frame without one, RFC 6455 §7.1.5), ``None`` if it sent no close frame."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class RawWebSocket:
    """An Engine.IO session over a WebSocket written frame by frame.

    On a plain socket rather than asyncio streams: a write the server refused (it already
    closed) must not hide the close frame it sent first, so writes never stop reading.
    Engine.IO pings (``2``) are answered while reading, so a session lives as long as the
    test wants; every message read is kept in :attr:`messages`, every Socket.IO event in
    :attr:`events` with its arrival time.
    """

    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)
    handshake: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[float, str, list[Any]]] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    write_error: OSError | None = None

    async def write(self, data: bytes) -> None:
        """Send raw bytes; once the server refuses them, later writes are dropped."""
        if self.write_error is None:
            try:
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
            except OSError as exc:
                self.write_error = exc

    async def send(self, data: str | bytes) -> None:
        await self.write(message_frame(data))

    def shutdown(self) -> None:
        """Half-close: the server reads the end of the stream, and may still answer."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    async def _fill(self) -> None:
        """Receive what the server sent next; :class:`Closed` at the end of the stream."""
        try:
            chunk = await asyncio.get_running_loop().sock_recv(self.sock, 1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            raise Closed(self.close_code)
        self.buffer += chunk

    async def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def _frame(self) -> tuple[int, bytes]:
        first, second = await self._read(2)
        size = second & 0x7F
        if size >= 126:
            size = int.from_bytes(await self._read(2 if size == 126 else 8), "big")
        return first & 0x0F, await self._read(size)

    async def message(self) -> str | bytes:
        """The next data message from the server; raises :class:`Closed` at its end."""
        while True:
            opcode, payload = await self._frame()
            if opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if payload else 1005
                continue  # read on to the end of the TCP stream
            if opcode == 0x1:
                text = payload.decode()
                if text == "2":
                    await self.send("3")
                    continue
                if text.startswith("42["):
                    name, *args = orjson.loads(text[2:])
                    self.events.append((time.monotonic(), name, args))
                self.messages.append(text)
                return text
            if opcode == 0x2:
                self.messages.append(payload)
                return payload

    async def until(self, prefix: str, timeout: float = 5.0) -> str:
        """Read up to the first text message starting with ``prefix``."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.message()
                if isinstance(message, str) and message.startswith(prefix):
                    return message

    async def event(self, name: str, timeout: float = 5.0) -> list[Any]:
        """Read up to the next Socket.IO event called ``name``; its arguments."""
        seen = len(self.events)
        async with asyncio.timeout(timeout):
            while True:
                await self.message()
                for _, event, args in self.events[seen:]:
                    if event == name:
                        return args
                seen = len(self.events)

    def named(self, name: str) -> list[tuple[float, list[Any]]]:
        return [(at, args) for at, event, args in self.events if event == name]

    async def connect(self, auth: dict[str, Any] | None = None, timeout: float = 5.0) -> str:
        """Socket.IO CONNECT to ``/``: the server's answer (``40{...}`` or ``44{...}``)."""
        await self.send(connect_packet(auth))
        async with asyncio.timeout(timeout):
            while True:
                message = await self.message()
                if isinstance(message, str) and message[:2] in ("40", "44"):
                    return message

    async def ended(self, timeout: float = 5.0) -> int | None:
        """Read everything up to the end of the TCP stream (within ``timeout``); the close
        code the server sent, if any. Raises ``TimeoutError`` if the server keeps it open."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.message()
            except Closed as closed:
                return closed.code

    def abort(self) -> None:
        self.sock.close()


async def open_websocket(url: str, query: str = "") -> RawWebSocket:
    """Upgrade a new TCP connection to an Engine.IO WebSocket session; its OPEN is read."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setblocking(False)
    ws = RawWebSocket(sock)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        await ws.write((f"GET {EIO_PATH}websocket{query} HTTP/1.1\r\nHost: x\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in ws.buffer:
            await ws._fill()
        head, _, rest = bytes(ws.buffer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        ws.buffer = bytearray(rest)
        opened = await ws.until("0")
    except BaseException:
        sock.close()
        raise
    ws.handshake = orjson.loads(opened[1:])
    return ws


@contextlib.asynccontextmanager
async def websocket(url: str, query: str = "") -> AsyncIterator[RawWebSocket]:
    ws = await open_websocket(url, query)
    try:
        yield ws
    finally:
        ws.abort()


@dataclass
class Polling:
    """An Engine.IO long-polling session on an aiohttp client session."""

    http: aiohttp.ClientSession
    url: str
    sid: str = ""
    handshake: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.url}{EIO_PATH}polling&sid={self.sid}"

    async def open(self) -> Polling:
        async with self.http.get(f"{self.url}{EIO_PATH}polling") as response:
            body = await response.text()
        assert response.status == 200 and body.startswith("0"), (response.status, body)
        self.handshake = orjson.loads(body[1:])
        self.sid = self.handshake["sid"]
        return self

    async def post(self, body: bytes | str, timeout: float = 5.0) -> tuple[int, bytes]:
        data = body.encode() if isinstance(body, str) else body
        async with asyncio.timeout(timeout), self.http.post(self.endpoint, data=data) as response:
            return response.status, await response.read()

    async def get(self, timeout: float = 5.0) -> tuple[int, str]:
        async with asyncio.timeout(timeout), self.http.get(self.endpoint) as response:
            return response.status, await response.text()

    async def close(self) -> None:
        """Send the Engine.IO close packet (refused if the session is already gone)."""
        await self.post("1")


@dataclass
class LatencyProbe:
    """GETs ``/healthz`` every ``interval`` seconds, one at a time, timing each answer.

    A request still unanswered when the probe stops counts with the time it has waited,
    so a server that froze for good cannot pass as fast."""

    url: str
    interval: float = 0.02
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max(self.latencies, default=0.0)

    def slow(self, limit: float) -> list[float]:
        return [round(latency, 3) for latency in self.latencies if latency > limit]

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                started = time.monotonic()
                request = asyncio.ensure_future(self._get(http))
                done, _ = await asyncio.wait({request, asyncio.ensure_future(stop.wait())},
                                             return_when=asyncio.FIRST_COMPLETED)
                if request not in done:
                    request.cancel()
                    self.latencies.append(time.monotonic() - started)
                    return
                self.latencies.append(time.monotonic() - started)
                if not request.cancelled() and request.exception() is not None:
                    self.failures.append(repr(request.exception()))
                await asyncio.sleep(self.interval)

    async def _get(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{self.url}/healthz") as response:
            await response.read()
            assert response.status == 200, response.status


@contextlib.asynccontextmanager
async def probing(url: str) -> AsyncIterator[LatencyProbe]:
    """A :class:`LatencyProbe` running for the duration of the block."""
    probe, stop = LatencyProbe(url), asyncio.Event()
    task = asyncio.create_task(probe.run(stop))
    try:
        yield probe
    finally:
        stop.set()
        await task


class LogReader:
    """Reads a server's log file from where the last read stopped: whole lines only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = os.path.getsize(path) if os.path.exists(path) else 0

    def new_lines(self) -> list[str]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[:data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [line for line in complete.decode(errors="replace").splitlines() if line.strip()]


def log_problems(lines: list[str], secrets: tuple[str, ...] = ()) -> list[str]:
    """Lines that are not one JSON object, carry a traceback or error level, or a secret."""
    bad: list[str] = []
    for line in lines:
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(f"not JSON: {line[:300]}")
            continue
        if not isinstance(entry, dict) or not {"ts", "level", "logger", "msg"} <= set(entry):
            bad.append(f"not a log entry: {line[:300]}")
        elif "exc" in entry or "Traceback" in line or entry["level"] in ("error", "critical"):
            bad.append(f"traceback or error: {line[:300]}")
        elif any(secret in line for secret in secrets):
            bad.append(f"secret in log: {line[:300]}")
    return bad
