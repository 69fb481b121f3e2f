"""Structured logging: one JSON object per line, never a token or secret."""

from __future__ import annotations

import logging
import re

import orjson

#: Anything that looks like a JWT (three base64url parts) is masked in log output.
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
_STANDARD = frozenset(vars(logging.makeLogRecord({})))


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


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
