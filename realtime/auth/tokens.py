"""JWT verification with PyJWT: HMAC secrets, PEM public keys and JWKS documents.

The algorithm list comes from configuration; the token's header only selects *which*
configured key to use, so ``alg: none`` and algorithm-confusion tokens are refused.
PyJWT checks the signature, ``iss`` and ``aud``; every rule about the claims themselves
(types, expiry, not-before) is in :func:`identity_from_claims`, in one place.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKSet

from realtime.auth.identity import AuthError, Identity

MAX_TOKEN_LENGTH = 16 * 1024
MAX_CLAIM_ITEMS = 1000
MAX_CLAIM_TEXT = 256
#: Verified tokens remembered by :class:`VerifiedTokens` (service tokens: a handful).
MAX_CACHED_TOKENS = 1024


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
        self.leeway = leeway
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
                leeway=self.leeway,
                # sub and the times are checked by identity_from_claims
                options={"require": ["sub", "exp"], "verify_aud": self._audience is not None,
                         "verify_exp": False, "verify_nbf": False, "verify_iat": False,
                         "verify_sub": False},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("invalid_token", f"missing claim {exc.claim!r}") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid_token", "wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid_token", "wrong audience") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from None
        return identity_from_claims(claims, leeway=self.leeway)


class VerifiedTokens:
    """Tokens verified before, remembered until their ``exp``: a backend that publishes
    many requests with one service token pays the signature check once, not per request.

    Keyed by the whole token (a changed byte is another key, verified afresh); bounded
    (the oldest entry goes first); an expired entry answers ``expired`` as verification
    would. Only successful verifications are kept, so a refused token is refused again
    by the verifier each time.
    """

    def __init__(self, verifier: TokenVerifier, max_entries: int = MAX_CACHED_TOKENS,
                 clock: Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self._max = max_entries
        self._clock = clock
        self._identities: dict[str, Identity] = {}

    async def verify(self, token: object) -> Identity:
        identity = self._identities.get(token) if isinstance(token, str) else None
        if identity is not None:
            if identity.expires_at > self._clock() - self.verifier.leeway:
                return identity
            del self._identities[token]  # type: ignore[arg-type]
            raise AuthError("expired", "token has expired")
        identity = await self.verifier.verify(token)
        assert isinstance(token, str)  # verify refuses anything else
        if len(self._identities) >= self._max:
            del self._identities[next(iter(self._identities))]
        self._identities[token] = identity
        return identity

    def __len__(self) -> int:
        return len(self._identities)


def _time(claims: Mapping[str, Any], name: str, required: bool = False) -> float | None:
    """A NumericDate claim: a finite JSON number (PyJWT would also take ``"123"``)."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value):
        raise AuthError("invalid_token", f"claim '{name}' must be a number (seconds since epoch)")
    return float(value)


def _texts(claims: Mapping[str, Any], name: str, allow_int: bool = False) -> list[str]:
    """A list claim of non-empty strings (and integers, for order ids)."""
    value = claims.get(name, [])
    kinds = (str, int) if allow_int else (str,)
    if not isinstance(value, list) or len(value) > MAX_CLAIM_ITEMS or not all(
        isinstance(item, kinds) and not isinstance(item, bool)
        and 0 < len(str(item)) <= MAX_CLAIM_TEXT for item in value
    ):
        what = "order ids" if allow_int else "non-empty strings"
        raise AuthError("invalid_token", f"claim '{name}' must be a list of {what}")
    return [str(item) for item in value]


def identity_from_claims(claims: Mapping[str, Any], *, leeway: float = 0.0,
                         now: float | None = None) -> Identity:
    """Every rule about claims: types first (``sub``, ``exp``/``nbf``/``iat``, ``roles``,
    ``orders``), then the validity window (``exp`` past → ``expired``; ``nbf``/``iat`` in
    the future → ``invalid_token``), each with ``leeway`` seconds of clock skew."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_CLAIM_TEXT:
        raise AuthError("invalid_token", "claim 'sub' must be a non-empty string")
    exp = _time(claims, "exp", required=True)
    assert exp is not None
    not_before, issued_at = _time(claims, "nbf"), _time(claims, "iat")
    roles, orders = _texts(claims, "roles"), _texts(claims, "orders", allow_int=True)
    token_id = claims.get("jti")
    if token_id is not None and (not isinstance(token_id, str) or not token_id
                                 or len(token_id) > MAX_CLAIM_TEXT):
        raise AuthError("invalid_token", "claim 'jti' must be a non-empty string")
    now = time.time() if now is None else now
    if exp <= now - leeway:
        raise AuthError("expired", "token has expired")
    if (not_before is not None and not_before > now + leeway) or \
            (issued_at is not None and issued_at > now + leeway):
        raise AuthError("invalid_token", "token is not valid yet (nbf/iat)")
    return Identity(user_id=sub, roles=frozenset(roles), orders=frozenset(orders),
                    expires_at=exp, token_id=token_id, issued_at=issued_at)


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
    """Mint an HMAC token (development CLI and tests), with a random ``jti`` to revoke it by."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + int(ttl),
                              "jti": secrets.token_urlsafe(12)}
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


__all__ = ["TokenVerifier", "VerifiedTokens", "identity_from_claims", "load_public_key",
           "mint_token"]
