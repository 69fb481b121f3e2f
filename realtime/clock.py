"""Timestamps the server makes, as clients and backends read them: ISO-8601 strings in UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso(epoch: float) -> str:
    """``2026-11-25T08:15:30.123Z`` for a POSIX time."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def now_iso() -> str:
    return iso(time.time())
