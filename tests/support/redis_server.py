"""A private redis-server per test (so fault tests can kill and restart it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time

EXTERNAL = os.environ.get("REALTIME_TEST_REDIS_URL")


class RedisServer:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="redis-test-")

    @property
    def url(self) -> str:
        return EXTERNAL or f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if EXTERNAL:
            return self
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if EXTERNAL:
            raise RuntimeError("cannot kill an external Redis (REALTIME_TEST_REDIS_URL)")
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
