"""``/healthz`` (alive), ``/readyz`` (dependencies reachable) and ``/metrics``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from realtime.metrics import CONTENT_TYPE_LATEST, Metrics

Check = Callable[[], tuple[bool, str]]

#: URLs, IP addresses and ``host:port`` pairs (also Python's ``('host', port)``) in reasons.
_ADDRESS = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://\S+"
    r"|\[[0-9A-Fa-f:.]+\](?::\d+)?"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
    r"|\b(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z0-9\-]+:\d{1,5}\b"
    r"|\('[^']*',\s*\d+"
)


def public_reason(reason: str) -> str:
    """A readiness reason fit for unauthenticated callers: internal addresses removed.

    The full reason stays with the component's own log lines and ``/metrics``.
    """
    return _ADDRESS.sub("[address]", reason)


class Readiness:
    """Named readiness checks contributed by components (bus, Kafka consumer, ...)."""

    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.draining = False

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    def report(self) -> tuple[bool, dict[str, str]]:
        results = {name: check() for name, check in self.checks.items()}
        if self.draining:
            results["server"] = (False, "shutting down")
        ready = all(ok for ok, _ in results.values())
        return ready, {name: reason for name, (_, reason) in results.items()}


def add_routes(app: web.Application, readiness: Readiness, metrics: Metrics) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready, checks = readiness.report()
        public = {name: public_reason(reason) for name, reason in checks.items()}
        return web.json_response({"ready": ready, "checks": public}, status=200 if ready else 503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)


STATIC = Path(__file__).resolve().parent.parent / "static"
OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


def add_demo_route(app: web.Application) -> None:
    """``GET /demo`` (live events through the browser's EventSource), ``GET /`` (redirects
    there, with the other entry points in the body) and the OpenAPI file."""

    async def demo(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "demo.html",
                                headers={"Cache-Control": "no-cache"})

    app.router.add_get("/demo", demo)

    async def index(_: web.Request) -> web.Response:
        # A browser lands on the demo page; curl shows where things are.
        links = {"demo": "/demo", "openapi": "/api/v1/openapi.json", "health": "/healthz",
                 "ready": "/readyz", "metrics": "/metrics", "socketio": "/socket.io/",
                 "sse": "/sse", "docs": "README.md in the source tree"}
        return web.json_response(links, status=302, headers={"Location": "/demo"})

    app.router.add_get("/", index)

    async def openapi(_: web.Request) -> web.FileResponse:
        return web.FileResponse(OPENAPI, headers={"Content-Type": "application/json"})

    app.router.add_get("/api/v1/openapi.json", openapi)
