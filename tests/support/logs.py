"""What the server logged during a test, as the process would write it (JSON lines)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from realtime.logs import JsonFormatter


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()
           or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


def json_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[dict[str, Any]]:
    """The captured records the server writes at ``level`` or above, each formatted and
    parsed back as the JSON line it is (a traceback shows up as an ``exc`` key).

    aiohttp's access log is left out below WARNING, as ``configure_logging`` sets it."""
    formatter = JsonFormatter()
    return [orjson.loads(formatter.format(record)) for record in caplog.records
            if record.levelno >= level
            and (record.name != "aiohttp.access" or record.levelno >= logging.WARNING)]
