"""WebSocket transport options engine.io does not expose: permessage-deflate on or off.

Compressing every frame for every socket costs far more CPU than the bandwidth it saves
for small JSON events, so it is off unless ``REALTIME_WS_COMPRESSION=true``.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket


class _WebSocket(WebSocket):  # type: ignore[misc]
    compress = False

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                       compress=self.compress)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def configure_websocket(engineio_server: Any, *, compress: bool) -> None:
    """Use our WebSocket wrapper for this engine.io server only (no global patching)."""
    websocket = type("WebSocket", (_WebSocket,), {"compress": compress})
    engineio_server._async = {**engineio_server._async, "websocket": websocket}
