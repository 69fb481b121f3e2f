"""Composition root: the one place that builds every component from :class:`Settings`.

    ingest (HTTP, Kafka) → Router → FanoutBus (memory | redis) → gateways (Socket.IO, SSE)

Components receive what they need through their constructors; nothing below this
module reads configuration or knows which backend the others use (the backends are
picked once, by URL, by :func:`realtime.backends.create_backends`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from realtime.auth import TokenVerifier
from realtime.auth.orders import AuthorizationCallback, CircuitBreaker, OrderAccess
from realtime.auth.tokens import load_public_key
from realtime.backends import BackendOptions, Backends, create_backends
from realtime.bus import FanoutBus, Message
from realtime.control.history import RoomHistory
from realtime.control.http import ControlEndpoints
from realtime.control.kafka import ControlEvents
from realtime.control.service import Control
from realtime.gateways.admin import enable_admin_ui
from realtime.gateways.core import SessionCore
from realtime.gateways.recovery import Recovery
from realtime.gateways.session import RoomPolicy
from realtime.gateways.socketio import SocketIOGateway, SocketIOOptions
from realtime.gateways.sse import SSEGateway, SSEOptions
from realtime.http.cors import CorsPolicy
from realtime.http.errors import ServiceAuth, error_middleware
from realtime.http.health import Readiness, add_demo_route, add_routes
from realtime.http.presence import add_presence_route
from realtime.ingest.http import PublishEndpoint
from realtime.ingest.kafka import KafkaIngest
from realtime.ingest.pipeline import Ingestor
from realtime.kafka.producer import KafkaProducer
from realtime.metrics import Metrics
from realtime.requests import RequestSink, UserUpdateRequests
from realtime.routing import Router
from realtime.settings import Settings
from realtime.state.orders import OrderStore
from realtime.transport.engineio import EngineConfig

log = logging.getLogger(__name__)

APP_KEY = web.AppKey("realtime", object)


@dataclass
class Server:
    """Everything one instance runs, wired; ``app`` is the aiohttp application to serve."""

    settings: Settings
    app: web.Application
    bus: FanoutBus
    orders: OrderStore
    ingestor: Ingestor
    socketio: SocketIOGateway
    sse: SSEGateway
    readiness: Readiness
    metrics: Metrics
    verifier: TokenVerifier
    backends: Backends
    callback: AuthorizationCallback | None = None
    kafka: KafkaIngest | None = None
    producer: KafkaProducer | None = None
    closers: list[Any] = field(default_factory=list)


def build_verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(
        algorithms=settings.jwt_algorithms,
        secret=settings.effective_jwt_secret,
        public_key=load_public_key(settings.jwt_public_key, settings.jwt_public_key_file),
        jwks_url=settings.jwt_jwks_url,
        jwks_cache_seconds=settings.jwt_jwks_cache_seconds,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
    )


def backend_options(settings: Settings) -> BackendOptions:
    return BackendOptions(
        prefix=settings.redis_prefix, history_size=settings.history_size,
        history_ttl=settings.history_ttl_seconds, dedup_window=settings.dedup_window_seconds,
        order_ttl=settings.order_state_ttl_seconds, presence_ttl=settings.presence_ttl_seconds,
        revocation_ttl=settings.revocation_ttl_seconds,
        control_timeout=settings.control_timeout_seconds)


def socketio_options(settings: Settings) -> SocketIOOptions:
    return SocketIOOptions(
        engine=EngineConfig(ping_interval=settings.ping_interval,
                            ping_timeout=settings.ping_timeout,
                            max_payload=max(1_000_000, 4 * settings.max_payload_bytes),
                            buffer_limit=settings.ws_buffer_bytes,
                            cors_origins=settings.cors_origins),
        auth_timeout=settings.auth_timeout,
        max_payload_bytes=settings.max_payload_bytes,
        rate_per_second=settings.rate_limit_per_second,
        rate_burst=settings.rate_limit_burst,
        disconnect_after=settings.rate_limit_disconnect_after)


def sse_options(settings: Settings) -> SSEOptions:
    return SSEOptions(buffer_bytes=settings.sse_buffer_bytes,
                      heartbeat_seconds=settings.sse_heartbeat_seconds,
                      cookie_name=settings.sse_cookie_name,
                      cors=CorsPolicy(settings.cors_origins))


def build_server(settings: Settings, *, request_sink: RequestSink | None = None) -> Server:
    """Wire one instance. ``request_sink`` overrides the Kafka producer (tests)."""
    metrics = Metrics()
    readiness = Readiness()
    verifier = build_verifier(settings)
    backends = create_backends(settings.bus_url, backend_options(settings))
    bus, orders, presence = backends.bus, backends.orders, backends.presence
    callback = None
    if settings.authz_callback_url:
        callback = AuthorizationCallback(
            settings.authz_callback_url,
            timeout=settings.authz_timeout,
            cache_seconds=settings.authz_cache_seconds,
            breaker=CircuitBreaker(settings.authz_breaker_failures,
                                   settings.authz_breaker_reset_seconds),
        )
    access = OrderAccess(settings.order_reader_roles, orders, callback)
    rooms = RoomPolicy(access, orders, bus.interest, settings.max_order_subscriptions,
                       presence)
    ingestor = Ingestor(Router(), bus, orders, metrics, settings.max_request_bytes)
    producer = KafkaProducer(settings) if settings.kafka_bootstrap else None
    core = SessionCore(verifier, rooms, bus, metrics, backends.revocations)
    gateway = SocketIOGateway(options=socketio_options(settings), core=core,
                              user_requests=UserUpdateRequests(
                                  request_sink if request_sink is not None else producer,
                                  settings.kafka_request_topic, settings.admin_role),
                              metrics=metrics,
                              recovery=Recovery(backends.sessions, settings.recovery_seconds,
                                                backends.head))
    sse = SSEGateway(options=sse_options(settings), core=core, metrics=metrics)
    control = Control(backends.control, backends.revocations, [gateway, sse])
    control_events = ControlEvents(control, settings.revocation_ttl_seconds)
    kafka = KafkaIngest(settings, ingestor, producer, metrics,
                        control=control_events.handle) if producer else None

    app = web.Application(middlewares=[error_middleware],
                          client_max_size=settings.max_request_bytes)
    gateway.attach(app)
    if settings.admin_ui_username and settings.admin_ui_password:
        # Socket.IO Admin UI (https://admin.socket.io), production mode, own credentials.
        enable_admin_ui(gateway.sio, settings.admin_ui_username, settings.admin_ui_password)
    sse.add_routes(app)
    add_demo_route(app)
    service_auth = ServiceAuth(verifier, settings.service_role, metrics)
    PublishEndpoint(ingestor, service_auth, backends.idempotency,
                    settings.publish_rate_per_second, settings.publish_burst).add_routes(app)
    add_routes(app, readiness, metrics)
    add_presence_route(app, presence, service_auth, metrics)
    ControlEndpoints(control, RoomHistory(bus, backends.head), presence, service_auth, metrics,
                     settings.revocation_ttl_seconds).add_routes(app)
    presence.stats = lambda: {"connections": len(gateway.connections) + len(sse.streams),
                              "socketio": len(gateway.connections), "sse": len(sse.streams),
                              "rooms": len(bus.interest)}
    readiness.add("bus", bus.status)

    def dispatched(messages: list[Message], seconds: float) -> None:
        metrics.deliveries.inc(len(messages))
        metrics.fanout_seconds.observe(seconds)

    bus.on_dispatched = dispatched
    metrics.watch_bus(lambda: bus.status()[0], lambda: bus.reconnects, lambda: bus.trims)
    if kafka is not None:
        readiness.add("kafka", kafka.status)

    server = Server(settings=settings, app=app, bus=bus, orders=orders, ingestor=ingestor,
                    socketio=gateway, sse=sse, readiness=readiness, metrics=metrics,
                    verifier=verifier, backends=backends, callback=callback, kafka=kafka,
                    producer=producer)
    app[APP_KEY] = server

    async def on_startup(_: web.Application) -> None:
        await backends.start()
        gateway.recovery.start()
        if kafka is not None:
            await kafka.start()

    async def on_shutdown(_: web.Application) -> None:
        # Stop ingesting first: finish in-flight fan-out and commit before clients go.
        readiness.draining = True
        log.info("shutting down: draining Kafka ingest")
        if kafka is not None:
            await kafka.stop()
        log.info("shutting down: closing client connections")
        await sse.close_all("server_shutdown")
        await gateway.shutdown()
        log.info("shutting down: done")

    async def on_cleanup(_: web.Application) -> None:
        log.info("shutting down: closing producer and bus")
        if producer is not None:
            await producer.close()
        await backends.close()
        if callback is not None:
            await callback.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return server
