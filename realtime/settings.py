"""One typed, validated settings object built from ``REALTIME_*`` environment variables.

Nothing else in the package reads ``os.environ``: the composition root builds a
:class:`Settings` once and hands the relevant parts to each component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Used when no key material is configured, so ``realtime serve`` works out of the box.
DEV_JWT_SECRET = "realtime-dev-secret-change-me-0123456789"

#: Shortest accepted ``REALTIME_JWT_SECRET`` (HS256 wants a key as long as its 256-bit hash).
MIN_SECRET_BYTES = 32

CsvList = Annotated[list[str], NoDecode]

DEFAULT_TOPICS = [
    "api.user.events.processed",
    "api.order.events.processed",
    "external.system.responses",
    "realtime.publish",
]


class SettingsError(ValueError):
    """A configuration value is invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Every knob of the server. See README.md "Configuration" for the table."""

    model_config = SettingsConfigDict(env_prefix="REALTIME_", extra="ignore")

    # --- HTTP listener -------------------------------------------------------------
    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    cors_origins: CsvList = Field(default_factory=list)
    shutdown_grace: float = Field(10.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    max_request_bytes: int = Field(1024 * 1024, gt=0)

    # --- identity ------------------------------------------------------------------
    jwt_secret: str | None = None
    jwt_algorithms: CsvList = Field(default_factory=lambda: ["HS256"])
    jwt_public_key: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_jwks_url: str | None = None
    jwt_jwks_cache_seconds: float = Field(300.0, gt=0)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = Field(5.0, ge=0)
    auth_timeout: float = Field(10.0, gt=0)
    ping_interval: float = Field(25.0, gt=0, le=3600)
    ping_timeout: float = Field(20.0, gt=0, le=3600)

    # --- rooms and authorization ---------------------------------------------------
    order_reader_roles: CsvList = Field(default_factory=lambda: ["admin", "support"])
    admin_role: str = "admin"
    service_role: str = "service"
    authz_callback_url: str | None = None
    authz_timeout: float = Field(1.0, gt=0)
    authz_cache_seconds: float = Field(10.0, ge=0)
    authz_breaker_failures: int = Field(5, ge=1)
    authz_breaker_reset_seconds: float = Field(30.0, gt=0)
    max_order_subscriptions: int = Field(100, ge=1)

    # --- client limits -------------------------------------------------------------
    rate_limit_per_second: float = Field(20.0, gt=0)
    rate_limit_burst: int = Field(40, ge=1)
    rate_limit_disconnect_after: int = Field(20, ge=1)
    max_payload_bytes: int = Field(64 * 1024, gt=0)
    ws_buffer_bytes: int = Field(1024 * 1024, gt=0)
    publish_rate_per_second: float = Field(1000.0, gt=0)
    publish_burst: int = Field(2000, ge=1)

    # --- Socket.IO Admin UI (opt-in: set both) ---------------------------------------------
    admin_ui_username: str | None = None
    admin_ui_password: str | None = None

    # --- Server-Sent Events ------------------------------------------------------------
    sse_buffer_bytes: int = Field(1024 * 1024, gt=0)
    sse_heartbeat_seconds: float = Field(15.0, gt=0, le=15.0)
    sse_cookie_name: str = "realtime_token"

    # --- fan-out, history and shared state ------------------------------------------
    redis_url: str | None = None
    redis_prefix: str = "rt:"
    presence_ttl_seconds: int = Field(15, ge=2)
    dedup_window_seconds: float = Field(600.0, gt=0)
    history_size: int = Field(1000, ge=1)
    history_ttl_seconds: float = Field(3600.0, gt=0)
    order_state_ttl_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    revocation_ttl_seconds: float = Field(24 * 3600.0, gt=0, le=365 * 24 * 3600.0)
    control_timeout_seconds: float = Field(2.0, gt=0, le=60)
    #: Socket.IO connection-state recovery window (0 turns it off).
    recovery_seconds: float = Field(120.0, ge=0, le=24 * 3600.0)

    # --- Kafka ---------------------------------------------------------------------
    kafka_bootstrap: str | None = None
    kafka_topics: CsvList = Field(default_factory=lambda: list(DEFAULT_TOPICS))
    kafka_group_id: str = "realtime"
    kafka_client_id: str = "realtime"
    kafka_request_topic: str = "api.user.events.realtime"
    kafka_control_topic: str | None = None
    kafka_dlq_topic: str = "realtime.dlq"
    kafka_auto_offset_reset: Literal["latest", "earliest"] = "latest"
    kafka_enable_idempotence: bool = True
    kafka_produce_timeout: float = Field(5.0, gt=0)
    kafka_max_in_flight: int = Field(500, ge=1)
    kafka_fetch_max_wait_ms: int = Field(50, ge=0, le=10_000)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: Path | None = None

    @field_validator("cors_origins", "jwt_algorithms", "order_reader_roles", "kafka_topics",
                     mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: object) -> object:
        """``debug``, ``Info``, ``warn``: the spellings people use all mean the level."""
        if isinstance(value, str):
            upper = value.strip().upper()
            return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(upper, upper)
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        """A short HMAC secret can be brute-forced from one token (RFC 7518: ≥ 256 bits)."""
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes (got {len(value.encode())}); "
                "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
                " (or unset it to run in development mode with the built-in secret)")
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        allowed = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
                   "ES512", "PS256", "PS384", "PS512", "EdDSA"}
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(f"unsupported algorithm(s) {bad or value}; allowed: {sorted(allowed)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "redis+sentinel://",
                                           "memory://", "unix://")):
            raise ValueError("must start with redis://, rediss://, redis+sentinel://, unix:// "
                             "or memory://")
        return value

    @model_validator(mode="after")
    def _key_material(self) -> Settings:
        asymmetric = [a for a in self.jwt_algorithms if not a.startswith("HS")]
        has_key = self.jwt_public_key or self.jwt_public_key_file or self.jwt_jwks_url
        if asymmetric and not has_key:
            raise ValueError(
                f"algorithms {asymmetric} need REALTIME_JWT_PUBLIC_KEY, "
                "REALTIME_JWT_PUBLIC_KEY_FILE or REALTIME_JWT_JWKS_URL"
            )
        return self

    @property
    def bus_url(self) -> str:
        """The fan-out bus URL: Redis when configured, else in-process memory."""
        return self.redis_url or "memory://"

    @property
    def dev_mode(self) -> bool:
        """True when no key material is configured and the built-in dev secret is used."""
        return not (self.jwt_secret or self.jwt_public_key or self.jwt_public_key_file
                    or self.jwt_jwks_url)

    @property
    def effective_jwt_secret(self) -> str | None:
        if self.jwt_secret:
            return self.jwt_secret
        return DEV_JWT_SECRET if self.dev_mode else None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides, used by tests).

    Raises :class:`SettingsError` with a one-line message naming the variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) if err["loc"] else ""
        name = f"REALTIME_{field.upper()}" if field else "configuration"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or field.endswith(("secret", "password")) \
            else f" (got {value!r})"
        message = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{name}: {message}{shown}") from None
