"""``GET /api/v1/rooms/{room}/presence``: connection and distinct-user counts (service token)."""

from __future__ import annotations

from aiohttp import web

from realtime.dependency import DependencyError
from realtime.http.errors import ApiError, ServiceAuth, unavailable
from realtime.metrics import Metrics
from realtime.routing.table import ROOM_PATTERN
from realtime.state.presence import Presence


def add_presence_route(app: web.Application, presence: Presence, auth: ServiceAuth,
                       metrics: Metrics) -> None:
    async def presence_endpoint(request: web.Request) -> web.Response:
        await auth.require(request)
        room = request.match_info["room"]
        if not ROOM_PATTERN.fullmatch(room):
            raise ApiError(400, "invalid_request", "not a room name (e.g. user:42, role:admin)")
        try:
            connections, users = await presence.counts(room)
        except DependencyError as exc:
            raise unavailable(exc, "presence", metrics) from None
        return web.json_response({"room": room, "connections": connections, "users": users})

    app.router.add_get("/api/v1/rooms/{room}/presence", presence_endpoint)
