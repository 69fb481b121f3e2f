"""Shared fixtures: real servers on real ports, real clients."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import logging
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


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record the server logs during the test (DEBUG and up)."""
    caplog.set_level(logging.DEBUG)
    return caplog


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
