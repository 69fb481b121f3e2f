"""Socket.IO packets as the tests write them and as our server answers them (exact text)."""

from __future__ import annotations

import re

import orjson

#: The answer to a CONNECT to ``/``: ``40{"sid":"...","pid":"..."}`` (``pid``: the private
#: session id of connection-state recovery, absent when it is off).
CONNECTED = re.compile(r'40\{"sid":"([\w-]+)"(?:,"pid":"([\w-]+)")?\}')


def connect_packet(token: str | None = None) -> str:
    """A Socket.IO CONNECT to ``/`` in its Engine.IO message (``40`` or ``40{"token":...}``)."""
    return "40" if token is None else "40" + orjson.dumps({"token": token}).decode()


def refusal(event: str, ack: int | None = None, code: str = "unknown_event",
            message: str | None = None) -> str:
    """A refused event's answer: an ``error`` event, or the ack when one was asked."""
    message = message or f"unknown event '{event}'"
    answer = orjson.dumps({"ok": False, "event": event, "error": code, "code": code,
                           "message": message}).decode()
    return f'42["error",{answer}]' if ack is None else f"43{ack}[{answer}]"
