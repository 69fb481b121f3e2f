"""Client requests forwarded to backend services (``user_update_request`` → Kafka)."""

from __future__ import annotations

from typing import Protocol

import orjson

from realtime.auth.identity import Identity
from realtime.clock import now_iso
from realtime.gateways.protocol import ClientError, UserUpdateRequest


class RequestSink(Protocol):
    """Where requests go; the Kafka producer implements it. Raises on failure."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...


class UserUpdateRequests:
    """Authorise a ``user_update_request`` and hand it to the request topic."""

    def __init__(self, sink: RequestSink | None, topic: str, admin_role: str) -> None:
        self.sink = sink
        self.topic = topic
        self.admin_role = admin_role

    async def submit(self, identity: Identity, socket_id: str, request: UserUpdateRequest) -> None:
        if request.userId != identity.user_id and self.admin_role not in identity.roles:
            raise ClientError("forbidden", "you may only update your own user")
        if self.sink is None:
            raise ClientError("unavailable",
                              "user updates are unavailable: Kafka is not configured")
        value = {
            "type": "USER_UPDATE_REQUEST",
            "userId": request.userId,
            "updates": request.updates,
            "operationId": request.operationId,
            "requestedBy": identity.user_id,
            "socketId": socket_id,
            "timestamp": now_iso(),
        }
        try:
            await self.sink.send(self.topic, request.userId.encode(), orjson.dumps(value))
        except ClientError:
            raise
        except Exception as exc:
            raise ClientError("unavailable",
                              f"could not queue the update: {type(exc).__name__}") from None
