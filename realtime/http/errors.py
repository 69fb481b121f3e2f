"""The one error shape of the HTTP API, and service-token authentication."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from realtime.auth import AuthError, Identity, TokenVerifier
from realtime.auth.tokens import VerifiedTokens
from realtime.dependency import DependencyError
from realtime.metrics import Metrics

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str,
                   details: Any = None) -> web.Response:
    """``{"error": {"code", "message", "details"}}`` with ``status``."""
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


class ApiError(Exception):
    """Raised inside handlers; :func:`error_middleware` renders it."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


#: Codes for the errors aiohttp raises itself (routing, body size); others use the reason.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large"}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's plain-text 404/405/413 as the error JSON (keeping e.g. ``Allow``)."""
    details: dict[str, Any] = {"method": request.method, "path": request.path}
    message = exc.reason
    if isinstance(exc, web.HTTPNotFound):
        message = f"no such endpoint: {request.path} (see /api/v1/openapi.json)"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        details["allowed"] = sorted(exc.allowed_methods)
        message = f"{request.method} is not allowed on {request.path}"
    elif isinstance(exc, web.HTTPRequestEntityTooLarge):
        message = exc.text or "request body too large"
    code = _HTTP_CODES.get(exc.status, exc.reason.lower().replace(" ", "_").replace("-", "_"))
    response = error_response(exc.status, code, message, details)
    for name, value in exc.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every HTTP error leaves as ``{"error": {code, message, details}}``.

    Responses a handler returns pass untouched (the Engine.IO transport answers its own
    protocol errors); what is raised is rendered here, including aiohttp's routing errors.
    """
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if isinstance(exc.details, dict) and "retryAfterSeconds" in exc.details:
            response.headers["Retry-After"] = str(exc.details["retryAfterSeconds"])
        return response
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like are answers, not errors
            raise
        return _from_http_exception(request, exc)
    except ConnectionError:  # the client went away; nothing to answer
        raise
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")


def unavailable(exc: DependencyError, operation: str, metrics: Metrics,
                **details: Any) -> ApiError:
    """The 503 for a failed backend. The caller learns only what failed; which backend,
    where and why goes to the log (one line) and ``/metrics``."""
    metrics.dependency_failures.labels(operation).inc()
    log.warning("%s unavailable: %s", operation, exc, extra={"operation": operation})
    return ApiError(503, "unavailable", f"{operation} is temporarily unavailable; retry later",
                    {"retryAfterSeconds": 1, **details})


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


class ServiceAuth:
    """Requires a valid token whose ``roles`` contain the service role."""

    def __init__(self, verifier: TokenVerifier, service_role: str, metrics: Metrics) -> None:
        self.verifier = verifier
        self.tokens = VerifiedTokens(verifier)
        self.service_role = service_role
        self.metrics = metrics

    async def require(self, request: web.Request) -> Identity:
        token = bearer_token(request)
        if token is None:
            raise ApiError(401, "unauthorized", "missing Authorization: Bearer token")
        try:
            identity = await self.tokens.verify(token)
        except AuthError as exc:
            self.metrics.auth_failures.labels(exc.code).inc()
            raise ApiError(401, exc.code, exc.message) from None
        if self.service_role not in identity.roles:
            self.metrics.auth_failures.labels("forbidden").inc()
            raise ApiError(403, "forbidden", f"a token with role {self.service_role!r} is required")
        return identity
