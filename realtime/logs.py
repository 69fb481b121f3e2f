"""Structured logging: one JSON object per line, never a token or secret."""

from __future__ import annotations

import logging
import re

import orjson

#: Anything that looks like a JWT is masked in log output: three base64url parts, or two
#: (header and payload both start with ``eyJ``; payload + signature alone rebuild an HS256
#: token, whose header is always the same).
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*(?:\.[\w-]*)?")
#: Record attributes that are not extras (``message``/``asctime`` are set by formatting).
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    return _JWT.sub("[token]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


#: Libraries that attach their own plain-text handler when their logger has no level.
_SELF_HANDLING = ("engineio.server", "engineio.client", "socketio.server", "socketio.client")


def configure_logging(level: str) -> None:
    """Every record, ours and the libraries', as one JSON line on stderr at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python warnings become JSON records too
    for name in _SELF_HANDLING:
        # python-engineio adds a StreamHandler (prose on stderr) unless a level is set; keep
        # its default threshold (ERROR) but let the records go through the JSON handler.
        library = logging.getLogger(name)
        library.handlers.clear()
        library.setLevel(max(logging.ERROR, root.level))
