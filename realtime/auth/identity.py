"""Who a connection or a backend caller is, as proven by a verified token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthCode = Literal["invalid_token", "expired", "forbidden", "rate_limited"]


class AuthError(Exception):
    """A refused credential; ``code`` is the machine-readable reason sent to clients."""

    def __init__(self, code: AuthCode, message: str) -> None:
        super().__init__(message)
        self.code: AuthCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified claims a connection acts with."""

    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    orders: frozenset[str] = field(default_factory=frozenset)
    expires_at: float = 0.0
    #: The token's ``jti`` and ``iat`` claims, when it has them (revocation matches on them).
    token_id: str | None = None
    issued_at: float | None = None

    def has_any_role(self, roles: frozenset[str] | set[str] | list[str]) -> bool:
        return not self.roles.isdisjoint(roles)

    @property
    def rooms(self) -> list[str]:
        """The rooms this identity joins automatically: its user room and one per role."""
        return [f"user:{self.user_id}", *(f"role:{role}" for role in sorted(self.roles))]
