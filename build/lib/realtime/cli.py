"""``realtime`` command line: ``serve``, ``token``, ``publish``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from realtime.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"realtime: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def cmd_serve(_: argparse.Namespace) -> int:
    from aiohttp import web

    from realtime.app import build_server
    from realtime.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
        pass
    server = build_server(settings)
    where = f"http://{'127.0.0.1' if settings.host == '0.0.0.0' else settings.host}:{settings.port}"
    mode = "Redis" if settings.redis_url else "in-memory"
    print(f"realtime: serving on {where} ({mode} fan-out, "
          f"Kafka {'at ' + settings.kafka_bootstrap if settings.kafka_bootstrap else 'off'})",
          flush=True)
    if settings.dev_mode:
        print("realtime: no REALTIME_JWT_SECRET set; using the built-in development secret.\n"
              "  mint a development token:  realtime token --sub alice --roles admin\n"
              "  connect with Socket.IO:    io('" + where + "', {auth: {token}})\n"
              "  publish an event:          realtime token --sub svc --roles service  "
              "# then POST /api/v1/publish", flush=True)
    web.run_app(server.app, host=settings.host, port=settings.port, print=None,
                shutdown_timeout=settings.shutdown_grace, handle_signals=True)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from realtime.auth.tokens import mint_token

    settings = _settings()
    secret = settings.effective_jwt_secret
    if not secret:
        print("realtime: token minting needs an HMAC secret (REALTIME_JWT_SECRET)",
              file=sys.stderr)
        return 2
    algorithm = next((a for a in settings.jwt_algorithms if a.startswith("HS")), "HS256")
    extra: dict[str, Any] = {}
    if settings.jwt_issuer:
        extra["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        extra["aud"] = settings.jwt_audience
    print(mint_token(secret, args.sub, roles=_split(args.roles), orders=_split(args.orders),
                     ttl=args.ttl, algorithm=algorithm, extra=extra))
    return 0


def read_events(source: str) -> list[Any]:
    """Events from a file or stdin: a JSON object, a JSON list, or JSON lines."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    try:
        data = orjson.loads(text)
        return data if isinstance(data, list) else [data]
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def cmd_publish(args: argparse.Namespace) -> int:
    import aiohttp

    from realtime.auth.tokens import mint_token

    settings = _settings()
    token = args.token
    if not token:
        secret = settings.effective_jwt_secret
        if not secret:
            print("realtime: pass --token (no HMAC secret to mint one)", file=sys.stderr)
            return 2
        token = mint_token(secret, "realtime-cli", roles=[settings.service_role], ttl=300)
    url = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/") + "/api/v1/publish"
    events = read_events(args.file)

    async def send() -> int:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session, session.post(
            url, data=orjson.dumps(events), headers=headers
        ) as response:
            print(await response.text())
            return 0 if response.status == 202 else 1

    return asyncio.run(send())


def cmd_dlq(args: argparse.Namespace) -> int:
    from realtime.kafka.dlq import read_dead_letters, replay_dead_letters

    settings = _settings()
    if not settings.kafka_bootstrap:
        print("realtime: set REALTIME_KAFKA_BOOTSTRAP to read dead letters", file=sys.stderr)
        return 2
    if args.action == "list":
        for letter in asyncio.run(read_dead_letters(settings, args.limit)):
            print(orjson.dumps(letter.summary()).decode())
        return 0
    if not args.refs:
        print("realtime: name the dead letters to replay (PARTITION:OFFSET)", file=sys.stderr)
        return 2
    try:
        for line in asyncio.run(replay_dead_letters(settings, args.refs)):
            print(f"replayed {line}")
    except LookupError as exc:
        print(f"realtime: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (configured by REALTIME_* variables)")
    serve.set_defaults(func=cmd_serve)
    token = sub.add_parser("token", help="mint a development token")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--roles", help="comma-separated roles, e.g. admin,service")
    token.add_argument("--orders", help="comma-separated order ids the user may watch")
    token.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)
    publish = sub.add_parser("publish", help="send events to POST /api/v1/publish")
    publish.add_argument("file", help="JSON file (object, list or JSON lines), or - for stdin")
    publish.add_argument("--url", help="server base URL (default http://127.0.0.1:$REALTIME_PORT)")
    publish.add_argument("--token", help="service token (default: minted from the secret)")
    publish.set_defaults(func=cmd_publish)
    dlq = sub.add_parser("dlq", help="list dead letters, or replay them to their source topic")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("refs", nargs="*", help="for replay: PARTITION:OFFSET as printed by list")
    dlq.add_argument("--limit", type=int, default=1000, help="at most this many (list)")
    dlq.set_defaults(func=cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
