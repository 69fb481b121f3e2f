"""What the server logged during a test: captured records, problems, and the JSON lines
the process would write. Hostile input must never log a traceback or an error."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import pytest

from realtime.logs import JsonFormatter


def problems(records: Iterable[logging.LogRecord]) -> list[str]:
    """Records that carry a traceback or are errors."""
    return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in records
            if r.exc_info or "Traceback" in r.getMessage() or r.levelno >= logging.ERROR]


class Captured(logging.Handler):
    """Every record emitted while installed on the root logger (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        return problems(self.records)

    def assert_clean(self) -> None:
        assert not self.problems(), self.problems()

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@contextlib.contextmanager
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = problems(caplog.records)
    assert not bad, bad


def json_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[dict[str, Any]]:
    """The captured records the server writes at ``level`` or above, each formatted and
    parsed back as the JSON line it is (a traceback shows up as an ``exc`` key).

    aiohttp's access log is left out below WARNING, as ``configure_logging`` sets it."""
    formatter = JsonFormatter()
    return [orjson.loads(formatter.format(record)) for record in caplog.records
            if record.levelno >= level
            and (record.name != "aiohttp.access" or record.levelno >= logging.WARNING)]
