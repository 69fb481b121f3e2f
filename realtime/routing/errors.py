"""The one error of the validation step; every ingest path turns it into a 400 or a dead letter."""

from __future__ import annotations


class RoutingError(ValueError):
    """An event that cannot be routed; ``reason`` is a stable code for dead letters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
