"""Socket.IO packets as the tests write them and as our server answers them (exact text)."""

from __future__ import annotations

import re

import orjson

#: The answer to a CONNECT to ``/``: ``40{"sid":"..."}``.
CONNECTED = re.compile(r'40\{"sid":"([\w-]+)"\}')


def connect_packet(token: str | None = None) -> str:
    """A Socket.IO CONNECT to ``/`` in its Engine.IO message (``40`` or ``40{"token":...}``)."""
    return "40" if token is None else "40" + orjson.dumps({"token": token}).decode()


def refusal(event: str, ack: int | None = None, code: str = "unknown_event",
            message: str | None = None) -> str:
    """A refused event's answer: an ``error`` event, or the ack when one was asked."""
    message = message or f"unknown event '{event}'"
    if ack is None:
        return '42["error",' + orjson.dumps(
            {"event": event, "code": code, "message": message}).decode() + "]"
    return f"43{ack}[" + orjson.dumps(
        {"ok": False, "error": code, "message": message}).decode() + "]"
