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


@pytest.mark.parametrize("given, level", [
    ("debug", "DEBUG"), ("Info", "INFO"), (" warn ", "WARNING"), ("error", "ERROR"),
    ("CRITICAL", "CRITICAL"),
])
def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, given: str,
                                       level: str) -> None:
    monkeypatch.setenv("REALTIME_LOG_LEVEL", given)
    assert load_settings().log_level == level


def test_unknown_log_level_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_LOG_LEVEL", "chatty")
    with pytest.raises(SettingsError, match=r"^REALTIME_LOG_LEVEL: .*'CHATTY'"):
        load_settings()


@pytest.mark.parametrize("secret", ["x", "", "s" * 31, "é" * 15])
def test_short_jwt_secret_is_refused_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("REALTIME_JWT_SECRET", secret)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith("REALTIME_JWT_SECRET: must be at least 32 bytes"), message
    assert "\n" not in message and "got '" not in message


@pytest.mark.parametrize("secret", ["s" * 32, "é" * 16])
def test_secret_of_32_bytes_is_accepted(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("REALTIME_JWT_SECRET", secret)
    settings = load_settings()
    assert settings.effective_jwt_secret == secret and not settings.dev_mode


def test_development_mode_uses_a_long_enough_builtin_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("REALTIME_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    assert settings.dev_mode and len((settings.effective_jwt_secret or "").encode()) >= 32


@pytest.mark.parametrize("env, variable", [
    ({"REALTIME_JWT_SECRET": "short"}, "REALTIME_JWT_SECRET"),
    ({"REALTIME_LOG_LEVEL": "loud"}, "REALTIME_LOG_LEVEL"),
])
def test_serve_refuses_a_weak_secret_or_unknown_level_in_one_line(
        env: dict[str, str], variable: str) -> None:
    result = subprocess.run([sys.executable, "-m", "realtime", "serve"],
                            env={"PATH": os.environ["PATH"], **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert "short" not in lines[0]
