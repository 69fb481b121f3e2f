"""Socket.IO Admin UI (opt-in), with its login guarded against password guessing.

python-socketio's Admin UI compares the CONNECT ``auth`` with the configured credentials
and answers at once, as often as a client asks. Here every failed login costs the client
a delay and closes its connection, and failures are capped per client address and
overall within a window, after which logins are refused without a check.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from socketio.exceptions import ConnectionRefusedError

from realtime.transport.socketio import SocketIOServer

NAMESPACE = "/admin"


class LoginGuard:
    """Failed logins: ``delay`` seconds each, at most ``per_client`` per address and
    ``overall`` in total per ``window`` seconds."""

    def __init__(self, per_client: int = 5, overall: int = 50, window: float = 300.0,
                 delay: float = 1.0) -> None:
        self.per_client = per_client
        self.overall = overall
        self.window = window
        self.delay = delay
        self._failures: deque[tuple[float, str]] = deque()

    def _recent(self) -> deque[tuple[float, str]]:
        horizon = time.monotonic() - self.window
        while self._failures and self._failures[0][0] < horizon:
            self._failures.popleft()
        return self._failures

    def blocked(self, address: str) -> bool:
        recent = self._recent()
        return (len(recent) >= self.overall
                or sum(1 for _, who in recent if who == address) >= self.per_client)

    def failed(self, address: str) -> None:
        self._recent().append((time.monotonic(), address))


def enable_admin_ui(sio: SocketIOServer, username: str, password: str,
                    guard: LoginGuard | None = None) -> None:
    """Instrument ``sio`` (production mode, read-only) behind a :class:`LoginGuard`."""
    sio.instrument(auth={"username": username, "password": password},
                   mode="production", read_only=True, namespace=NAMESPACE)
    guard = guard or LoginGuard()
    check = sio.handlers[NAMESPACE]["connect"]

    async def guarded(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        address = str(environ.get("REMOTE_ADDR", ""))
        if not guard.blocked(address):
            try:
                if await check(sid, environ, auth) is not False:
                    return True
            except ConnectionRefusedError:
                pass
            guard.failed(address)
        await asyncio.sleep(guard.delay)
        eio_sid = sio.manager.eio_sid_from_sid(sid, NAMESPACE)
        sio.engine.spawn(sio.engine.disconnect(eio_sid))
        raise ConnectionRefusedError("authentication failed")

    sio.handlers[NAMESPACE]["connect"] = guarded
