"""CORS for browser pages on another origin (used by ``GET /sse``).

``REALTIME_CORS_ORIGINS`` unset: no CORS headers at all, so only same-origin pages read the
answers and no origin is ever granted credentials. Listed origins get their own origin
back with ``Access-Control-Allow-Credentials: true`` (cookies may be sent); ``*`` in the
list lets any other origin read *without* credentials. ``null`` (sandboxed frames,
``file://``) is never reflected. When the answer depends on the Origin it says
``Vary: Origin``, so caches never hand one origin's answer to another.
"""

from __future__ import annotations

from collections.abc import Iterable

ALLOW = "Access-Control-Allow-Origin"


class CorsPolicy:
    def __init__(self, origins: Iterable[str], *, methods: str = "GET",
                 headers: str = "Authorization, Last-Event-ID") -> None:
        listed = {origin.strip() for origin in origins} - {"null", ""}
        self.any = "*" in listed
        self.origins = frozenset(listed - {"*"})
        self.methods = methods
        self.allow_headers = headers

    def headers(self, origin: str | None) -> dict[str, str]:
        """CORS headers for an answer to a request from ``origin``."""
        vary = {"Vary": "Origin"} if self.origins else {}
        if origin is not None and origin in self.origins:
            return {ALLOW: origin, "Access-Control-Allow-Credentials": "true", **vary}
        if self.any:
            return {ALLOW: "*", **vary}
        return vary

    def preflight(self, origin: str | None) -> dict[str, str]:
        """Headers for the answer to an ``OPTIONS`` preflight."""
        headers = self.headers(origin)
        if ALLOW in headers:
            headers.update({"Access-Control-Allow-Methods": self.methods,
                            "Access-Control-Allow-Headers": self.allow_headers,
                            "Access-Control-Max-Age": "600"})
        return headers
