"""Connection options every aiokafka client of the server shares (bootstrap, TLS, SASL)."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from realtime.settings import Settings


def client_options(settings: Settings, suffix: str = "") -> dict[str, Any]:
    """Keyword arguments for AIOKafkaConsumer / AIOKafkaProducer / AIOKafkaAdminClient."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "client_id": settings.kafka_client_id + suffix,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": 15_000,
        "retry_backoff_ms": 200,
        "metadata_max_age_ms": 30_000,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        options["ssl_context"] = create_ssl_context(cafile=cafile)
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    return options
