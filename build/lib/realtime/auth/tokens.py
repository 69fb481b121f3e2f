"""JWT verification with PyJWT: HMAC secrets, PEM public keys and JWKS documents.

The algorithm list comes from configuration; the token's header only selects *which*
configured key to use, so ``alg: none`` and algorithm-confusion tokens are refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKSet

from realtime.auth.identity import AuthError, Identity

MAX_TOKEN_LENGTH = 16 * 1024


class TokenVerifier:
    """Turns a bearer token into an :class:`Identity` or raises :class:`AuthError`."""

    def __init__(
        self,
        *,
        algorithms: list[str],
        secret: str | None = None,
        public_key: str | None = None,
        jwks_url: str | None = None,
        jwks_cache_seconds: float = 300.0,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: float = 0.0,
    ) -> None:
        self.algorithms = list(algorithms)
        self._secret = secret
        self._public_key = public_key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._jwks_client: PyJWKClient | None = None
        self._jwks_set: PyJWKSet | None = None
        if jwks_url:
            if jwks_url.startswith(("http://", "https://")):
                self._jwks_client = PyJWKClient(
                    jwks_url, cache_keys=True, lifespan=int(jwks_cache_seconds), timeout=5
                )
            else:
                path = Path(jwks_url.removeprefix("file://"))
                self._jwks_set = PyJWKSet.from_json(path.read_text())

    async def verify(self, token: object) -> Identity:
        """Verify ``token``; JWKS look-ups over HTTP run off the event loop."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("invalid_token", "token must be a non-empty string")
        alg = self._header_alg(token)
        if self._jwks_client is not None and not alg.startswith("HS"):
            try:
                key: Any = (await asyncio.to_thread(
                    self._jwks_client.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise AuthError("invalid_token", f"no usable signing key: {exc}") from None
            return self._decode(token, alg, key)
        return self._decode(token, alg, self._key_for(token, alg))

    def verify_sync(self, token: object) -> Identity:
        """Synchronous variant for callers without JWKS-over-HTTP (CLI, tests)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise AuthError("invalid_token", "token must be a non-empty string")
        alg = self._header_alg(token)
        return self._decode(token, alg, self._key_for(token, alg))

    def _header_alg(self, token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError("invalid_token", f"algorithm {alg!r} is not accepted")
        return alg

    def _key_for(self, token: str, alg: str) -> Any:
        if alg.startswith("HS"):
            if not self._secret:
                raise AuthError("invalid_token", "no secret configured for HMAC tokens")
            return self._secret
        if self._public_key:
            return self._public_key
        if self._jwks_set is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            for jwk in self._jwks_set.keys:
                if jwk.key_id == kid:
                    return jwk.key
            raise AuthError("invalid_token", f"unknown key id {kid!r}")
        raise AuthError("invalid_token", f"no key configured for {alg}")

    def _decode(self, token: str, alg: str, key: Any) -> Identity:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("invalid_token", "token is not valid yet (nbf/iat)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("invalid_token", f"missing claim {exc.claim!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid_token", "wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid_token", "wrong audience") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from None
        return identity_from_claims(claims)


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """Validate the claim shapes we rely on (``sub``, ``roles``, ``orders``)."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 256:
        raise AuthError("invalid_token", "claim 'sub' must be a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise AuthError("invalid_token", "claim 'roles' must be a list of strings")
    orders = claims.get("orders", [])
    if not isinstance(orders, list) or not all(
        isinstance(o, str | int) and not isinstance(o, bool) for o in orders
    ):
        raise AuthError("invalid_token", "claim 'orders' must be a list of order ids")
    exp = claims.get("exp")
    return Identity(
        user_id=sub,
        roles=frozenset(roles),
        orders=frozenset(str(o) for o in orders),
        expires_at=float(exp) if isinstance(exp, int | float) else 0.0,
    )


def mint_token(
    secret: str,
    sub: str,
    *,
    roles: list[str] | None = None,
    orders: list[str] | None = None,
    ttl: float = 3600.0,
    now: float | None = None,
    algorithm: str = "HS256",
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Mint an HMAC token (development CLI and tests)."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + int(ttl)}
    if roles:
        claims["roles"] = roles
    if orders:
        claims["orders"] = orders
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm=algorithm)


def load_public_key(inline: str | None, path: Path | None) -> str | None:
    """The configured PEM public key, inline or from a file."""
    if inline:
        return inline.replace("\\n", "\n")
    if path:
        return path.read_text()
    return None


__all__ = ["TokenVerifier", "identity_from_claims", "load_public_key", "mint_token"]
