"""The control endpoints of the HTTP API (service token; the uniform error JSON).

``POST /api/v1/users/{userId}/disconnect``, ``POST /api/v1/tokens/revoke``,
``POST /api/v1/users/{userId}/rooms``, ``GET /api/v1/rooms/{room}/history`` and
``GET /api/v1/info``. Bodies go through the same parsers as Kafka control events.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from realtime.bus import BusError
from realtime.control.bus import Outcome
from realtime.control.commands import (
    Command,
    CommandError,
    parse_disconnect,
    parse_revoke,
    parse_rooms,
)
from realtime.control.history import HistoryError, RoomHistory
from realtime.control.service import Control
from realtime.dependency import DependencyError
from realtime.http.errors import ApiError, ServiceAuth, unavailable
from realtime.metrics import Metrics
from realtime.routing.table import ROOM_PATTERN
from realtime.state.presence import Presence

MAX_BODY = 64 * 1024
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
LIMIT = re.compile(r"[0-9]{1,4}")


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {"instances": outcome.instances, "answered": outcome.answered,
            "complete": outcome.complete}


class ControlEndpoints:
    def __init__(self, control: Control, history: RoomHistory, presence: Presence,
                 auth: ServiceAuth, metrics: Metrics, max_ahead: float) -> None:
        self.control = control
        self.history = history
        self.presence = presence
        self.auth = auth
        self.metrics = metrics
        self.max_ahead = max_ahead

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/users/{userId}/disconnect", self.disconnect)
        app.router.add_post("/api/v1/tokens/revoke", self.revoke)
        app.router.add_post("/api/v1/users/{userId}/rooms", self.rooms)
        app.router.add_get("/api/v1/rooms/{room}/history", self.room_history)
        app.router.add_get("/api/v1/info", self.info)

    async def _body(self, request: web.Request, user: bool = False) -> dict[str, Any]:
        """The JSON object sent (empty allowed), with the path's ``userId`` when ``user``."""
        await self.auth.require(request)
        raw = await request.read()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "payload_too_large", f"body is over {MAX_BODY} bytes")
        try:
            body = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "invalid_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        if user:
            if "userId" in body or "type" in body or "id" in body:
                raise ApiError(400, "invalid_request",
                               "unknown field(s): the user is named in the path")
            body["userId"] = request.match_info["userId"]
        elif "type" in body or "id" in body:
            raise ApiError(400, "invalid_request", "unknown field(s): type, id")
        return body

    async def _run(self, parse: Callable[[], Command]) -> Outcome:
        try:
            command = parse()
        except CommandError as exc:
            raise ApiError(400, exc.reason, exc.message) from None
        try:
            return await self.control.run(command)
        except DependencyError as exc:
            raise unavailable(exc, "control", self.metrics) from None

    async def disconnect(self, request: web.Request) -> web.Response:
        body = await self._body(request, user=True)
        outcome = await self._run(lambda: parse_disconnect(body))
        return web.json_response({"disconnected": outcome.count, **_outcome(outcome)})

    async def revoke(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        outcome = await self._run(lambda: parse_revoke(body, self.max_ahead))
        return web.json_response({"revoked": True, "disconnected": outcome.count,
                                  **_outcome(outcome)})

    async def rooms(self, request: web.Request) -> web.Response:
        body = await self._body(request, user=True)
        outcome = await self._run(lambda: parse_rooms(body))
        return web.json_response({"connections": outcome.count, **_outcome(outcome)})

    async def room_history(self, request: web.Request) -> web.Response:
        await self.auth.require(request)
        room = request.match_info["room"]
        if not ROOM_PATTERN.fullmatch(room):
            raise ApiError(400, "invalid_request", "not a room name (e.g. user:42, order:7)")
        raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
        if not LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ApiError(400, "invalid_request", f"'limit' must be 1-{MAX_LIMIT}")
        since = request.query.get("since")
        try:
            found = await self.history.read(room, since, int(raw_limit))
        except HistoryError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None
        except BusError as exc:
            raise unavailable(exc, "history", self.metrics) from None
        return web.json_response({
            "room": room,
            "events": [{"event": m.event, "payload": m.data, "position": m.position}
                       for m in found.messages],
            "reachesBack": found.reaches_back,
            "more": found.more,
        })

    async def info(self, request: web.Request) -> web.Response:
        await self.auth.require(request)
        try:
            instances = await self.presence.instances()
        except DependencyError as exc:
            raise unavailable(exc, "info", self.metrics) from None
        return web.json_response({"instance": self.presence.instance, "instances": instances})
