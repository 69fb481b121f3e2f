"""Authentication (JWT identities) and authorization (who may watch which order)."""

from realtime.auth.identity import AuthError, Identity
from realtime.auth.tokens import TokenVerifier

__all__ = ["AuthError", "Identity", "TokenVerifier"]
