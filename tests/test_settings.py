"""Settings: defaults, parsing, and one-line errors that name the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realtime.settings import DEFAULT_TOPICS, SettingsError, load_settings


def test_defaults_run_in_memory_without_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("REALTIME_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert settings.port == 8080 and settings.bus_url == "memory://"
    assert settings.kafka_bootstrap is None and settings.kafka_topics == DEFAULT_TOPICS
    assert settings.dev_mode and settings.effective_jwt_secret


def test_csv_lists_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_ORDER_READER_ROLES", "ops, support ,")
    monkeypatch.setenv("REALTIME_KAFKA_TOPICS", "a,b")
    monkeypatch.setenv("REALTIME_JWT_SECRET", "s" * 32)
    settings = load_settings()
    assert settings.order_reader_roles == ["ops", "support"]
    assert settings.kafka_topics == ["a", "b"] and not settings.dev_mode


@pytest.mark.parametrize("env, variable", [
    ({"REALTIME_PORT": "abc"}, "REALTIME_PORT"),
    ({"REALTIME_PORT": "70000"}, "REALTIME_PORT"),
    ({"REALTIME_JWT_ALGORITHMS": "RS256"}, "configuration"),
    ({"REALTIME_JWT_ALGORITHMS": "none"}, "REALTIME_JWT_ALGORITHMS"),
    ({"REALTIME_REDIS_URL": "http://x"}, "REALTIME_REDIS_URL"),
    ({"REALTIME_KAFKA_AUTO_OFFSET_RESET": "middle"}, "REALTIME_KAFKA_AUTO_OFFSET_RESET"),
    ({"REALTIME_RATE_LIMIT_BURST": "0"}, "REALTIME_RATE_LIMIT_BURST"),
])
def test_bad_values_give_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "\n" not in message and message.startswith(variable), message


def test_serve_refuses_to_start_with_a_bad_value() -> None:
    env = {"PATH": os.environ["PATH"], "REALTIME_PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "realtime", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "REALTIME_PORT" in lines[0], result.stderr
