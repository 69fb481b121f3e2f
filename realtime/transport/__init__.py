"""The transport layer: Engine.IO v4 (long-polling, WebSocket) and the seam to python-socketio.

``websocket`` (RFC 6455 codec, sans-I/O) → ``connection`` (a WebSocket on its asyncio
transport) → ``engineio`` (sessions, heartbeats, long-polling, upgrades) → ``socketio``
(python-socketio's server on that engine, with strict packet intake) → the gateways.
"""
