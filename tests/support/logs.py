"""Capture log records of an in-process server, to assert that hostile input logs no traceback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class Captured(logging.Handler):
    """Every record emitted while installed on the root logger (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def problems(self) -> list[str]:
        """Records that carry a traceback or are errors: none may appear for bad input."""
        return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.records
                if r.exc_info or r.levelno >= logging.ERROR]

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
