"""Shared fixtures: real servers on real ports, real clients."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from collections.abc import Iterator

import pytest

from support.kafka import KafkaBroker


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Tansu broker for the session (tests isolate themselves with unique topics/groups)."""
    broker = KafkaBroker().start()
    try:
        yield broker
    finally:
        if not broker.external:
            broker.kill()


from support.redis_server import RedisServer  # noqa: E402


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, private redis-server on a free port."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.kill()
