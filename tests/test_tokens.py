"""Identity: every refusal case of SPEC "Identity", directly and through a real connect."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
import socketio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from realtime.auth import AuthError, TokenVerifier
from realtime.auth.tokens import VerifiedTokens
from support.server import SECRET, free_port, run_server

NOW = int(time.time())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_PUBLIC_PEM = EC_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "exp": NOW + 600, "iat": NOW, "roles": ["user"]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


def unsigned() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims())}."


def confused() -> str:
    """HS256 signed with the RS256 public key as the HMAC secret (algorithm confusion)."""
    import hashlib
    import hmac
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = hmac.new(RSA_PUBLIC_PEM.encode(), header + b"." + body, hashlib.sha256).digest()
    return b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()


HS_VERIFIER = dict(algorithms=["HS256"], secret=SECRET, issuer="https://auth.example",
                   audience="realtime", leeway=0)
GOOD_EXTRA = {"iss": "https://auth.example", "aud": "realtime"}

BAD_HS_TOKENS = {
    "alg none": (unsigned(), "invalid_token"),
    "wrong signature": (jwt.encode(claims(**GOOD_EXTRA), "another-secret-0123456789abcdef0123",
                                   algorithm="HS256"), "invalid_token"),
    "expired": (hs(exp=NOW - 60, **GOOD_EXTRA), "expired"),
    "nbf in the future": (hs(nbf=NOW + 600, **GOOD_EXTRA), "invalid_token"),
    "wrong iss": (hs(iss="https://evil.example", aud="realtime"), "invalid_token"),
    "wrong aud": (hs(iss="https://auth.example", aud="other"), "invalid_token"),
    "missing sub": (hs(sub=None, **GOOD_EXTRA), "invalid_token"),
    "missing exp": (hs(exp=None, **GOOD_EXTRA), "invalid_token"),
    "malformed": ("not-a.jwt", "invalid_token"),
    "roles not a list": (hs(roles="admin", **GOOD_EXTRA), "invalid_token"),
    "roles not strings": (hs(roles=[1, 2], **GOOD_EXTRA), "invalid_token"),
    "HS384 not configured": (jwt.encode(claims(**GOOD_EXTRA), SECRET, algorithm="HS384"),
                             "invalid_token"),
}
#: Claims of the wrong type; each would otherwise pass (PyJWT reads ``int("...")``), and a
#: string ``exp`` used to yield a connection that never expires.
BAD_CLAIM_TYPES = {
    "exp as a string": ("exp", hs(exp=str(NOW + 600), **GOOD_EXTRA)),
    "exp as a boolean": ("exp", hs(exp=True, **GOOD_EXTRA)),
    "exp infinite": ("exp", hs(exp=float("inf"), **GOOD_EXTRA)),
    "exp as a list": ("exp", hs(exp=[NOW + 600], **GOOD_EXTRA)),
    "nbf as a string": ("nbf", hs(nbf=str(NOW - 60), **GOOD_EXTRA)),
    "iat as a string": ("iat", hs(iat=str(NOW), **GOOD_EXTRA)),
    "iat as an object": ("iat", hs(iat={"t": NOW}, **GOOD_EXTRA)),
    "sub empty": ("sub", hs(sub="", **GOOD_EXTRA)),
    "sub a number": ("sub", hs(sub=42, **GOOD_EXTRA)),
    "orders not a list": ("orders", hs(orders="o1", **GOOD_EXTRA)),
    "orders with objects": ("orders", hs(orders=[{"id": 1}], **GOOD_EXTRA)),
    "roles with an empty name": ("roles", hs(roles=[""], **GOOD_EXTRA)),
}
BAD_HS_TOKENS.update({name: (tok, "invalid_token") for name, (_, tok) in BAD_CLAIM_TYPES.items()})


@pytest.mark.parametrize("name", sorted(BAD_CLAIM_TYPES))
def test_claims_of_the_wrong_type_are_refused_naming_the_claim(name: str) -> None:
    claim, bad = BAD_CLAIM_TYPES[name]
    with pytest.raises(AuthError) as refused:
        TokenVerifier(**HS_VERIFIER).verify_sync(bad)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_token"
    assert repr(claim) in refused.value.message or f"'{claim}'" in refused.value.message, \
        refused.value.message


def test_numeric_times_are_accepted_and_exp_becomes_the_expiry() -> None:
    verifier = TokenVerifier(**HS_VERIFIER)  # type: ignore[arg-type]
    identity = verifier.verify_sync(hs(exp=NOW + 600.5, nbf=NOW - 1.5, iat=NOW, **GOOD_EXTRA))
    assert identity.expires_at == NOW + 600.5
    assert verifier.verify_sync(hs(**GOOD_EXTRA)).expires_at == NOW + 600


@pytest.mark.parametrize("name", sorted(BAD_HS_TOKENS))
async def test_bad_hmac_tokens_are_refused(name: str) -> None:
    token, code = BAD_HS_TOKENS[name]
    with pytest.raises(AuthError) as refused:
        await TokenVerifier(**HS_VERIFIER).verify(token)  # type: ignore[arg-type]
    assert refused.value.code == code, refused.value.message


async def test_good_hmac_token_and_leeway() -> None:
    verifier = TokenVerifier(**HS_VERIFIER)  # type: ignore[arg-type]
    identity = await verifier.verify(hs(orders=["o1", 2], **GOOD_EXTRA))
    assert identity.user_id == "alice" and identity.orders == frozenset({"o1", "2"})
    lenient = TokenVerifier(algorithms=["HS256"], secret=SECRET, leeway=5)
    assert (await lenient.verify(hs(exp=int(time.time()) - 2))).user_id == "alice"


async def test_algorithm_confusion_is_refused() -> None:
    verifier = TokenVerifier(algorithms=["RS256"], public_key=RSA_PUBLIC_PEM)
    with pytest.raises(AuthError) as refused:
        await verifier.verify(confused())
    assert refused.value.code == "invalid_token"
    both = TokenVerifier(algorithms=["RS256", "HS256"], public_key=RSA_PUBLIC_PEM,
                         secret="some-other-secret-0123456789abcdef")
    with pytest.raises(AuthError):
        await both.verify(confused())


async def test_rs256_and_es256_with_pem() -> None:
    rs = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    assert (await TokenVerifier(algorithms=["RS256"], public_key=RSA_PUBLIC_PEM)
            .verify(rs)).user_id == "alice"
    es = jwt.encode(claims(), EC_KEY, algorithm="ES256")
    assert (await TokenVerifier(algorithms=["ES256"], public_key=EC_PUBLIC_PEM)
            .verify(es)).user_id == "alice"
    with pytest.raises(AuthError):  # ES256 token against an RS256-only server
        await TokenVerifier(algorithms=["RS256"], public_key=RSA_PUBLIC_PEM).verify(es)


def jwks_document() -> dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    jwk.update(kid="key-1", alg="RS256", use="sig")
    return {"keys": [jwk]}


async def test_jwks_file_known_and_unknown_kid(tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document()))
    verifier = TokenVerifier(algorithms=["RS256"], jwks_url=str(path))
    good = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})
    assert (await verifier.verify(good)).user_id == "alice"
    unknown = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-2"})
    with pytest.raises(AuthError) as refused:
        await verifier.verify(unknown)
    assert refused.value.code == "invalid_token"


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, list[int]]]:
    hits: list[int] = []

    async def serve(_: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response(jwks_document())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/.well-known/jwks.json", hits
    await runner.cleanup()


async def test_jwks_url_is_cached_and_unknown_kid_refused(
        jwks_server: tuple[str, list[int]]) -> None:
    url, hits = jwks_server
    verifier = TokenVerifier(algorithms=["RS256"], jwks_url=url)
    good = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "key-1"})
    for _ in range(5):
        assert (await verifier.verify(good)).user_id == "alice"
    assert len(hits) == 1  # cached
    unknown = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(AuthError) as refused:
        await verifier.verify(unknown)
    assert refused.value.code == "invalid_token"


async def _connect_error(url: str, token: str) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, transports=["websocket"],
                             wait_timeout=5)
    await client.disconnect()
    assert errors, "no connect_error received"
    error: dict[str, Any] = errors[0]
    return error


async def test_refusals_reach_the_client_with_their_code() -> None:
    async with run_server(jwt_issuer="https://auth.example", jwt_audience="realtime",
                          jwt_leeway=0) as srv:
        for name, (token, code) in BAD_HS_TOKENS.items():
            error = await _connect_error(srv.url, token)
            assert error["data"]["code"] == code, (name, error)
            assert error["message"]
        metrics = srv.server.metrics.render().decode()
        assert 'realtime_auth_failures_total{code="expired"} 1.0' in metrics


async def test_sse_refuses_a_string_exp() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as session:
        bad = jwt.encode(claims(exp=str(NOW + 600)), SECRET, algorithm="HS256")
        async with session.get(f"{srv.url}/sse", headers={"Authorization": f"Bearer {bad}"}) \
                as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_token"


async def test_rs256_server_refuses_confused_token_over_socketio() -> None:
    async with run_server(jwt_algorithms=["RS256"], jwt_public_key=RSA_PUBLIC_PEM,
                          jwt_secret=None) as srv:
        error = await _connect_error(srv.url, confused())
        assert error["data"]["code"] == "invalid_token"


# --- verified service tokens kept until their exp ----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_verified_token_is_kept_until_its_exp_then_expired() -> None:
    clock = Clock()
    tokens = VerifiedTokens(TokenVerifier(algorithms=["HS256"], secret=SECRET), clock=clock)
    exp = int(clock.now) + 60
    token = hs(exp=exp)
    first = await tokens.verify(token)
    assert await tokens.verify(token) is first and len(tokens) == 1  # no second check
    clock.now = exp
    with pytest.raises(AuthError) as caught:
        await tokens.verify(token)
    assert caught.value.code == "expired" and len(tokens) == 0


async def test_refused_tokens_are_never_kept_and_the_cache_is_bounded() -> None:
    tokens = VerifiedTokens(TokenVerifier(algorithms=["HS256"], secret=SECRET), max_entries=2)
    for bad in [hs(exp=NOW - 1), hs()[:-2] + "xx", "", None, 7]:
        for _ in range(2):  # refused again, by the verifier
            with pytest.raises(AuthError):
                await tokens.verify(bad)
    assert len(tokens) == 0
    issued = [hs(sub=f"s{n}") for n in range(3)]
    for token in issued:
        await tokens.verify(token)
    assert len(tokens) == 2
    assert (await tokens.verify(issued[0])).user_id == "s0"  # verified afresh
