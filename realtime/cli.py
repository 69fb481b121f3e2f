"""realtime command line: serve, token, publish, disconnect, revoke, history, dlq, --version.

Expected failures (a bad value, a server or broker that cannot be reached, unreadable
input) end with one line on stderr and a non-zero status, never a traceback:
2 for usage and configuration errors, 1 for failures at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import orjson

from realtime.settings import Settings, SettingsError, load_settings

EPILOG = """examples:
  realtime serve                                   configured by REALTIME_* variables
  realtime token --sub alice --roles admin         a development token (1 hour)
  realtime publish events.json                     an object, a list or JSON lines
  echo '{"id":"1","type":"PUSH","event":"hi","rooms":["user:alice"]}' | realtime publish -
  realtime disconnect alice                        end alice's connections everywhere
  realtime revoke --user alice                     refuse alice's tokens issued until now
  realtime history order:42 --limit 10             a room's retained events
  realtime dlq list                                dead letters, one JSON line each
  realtime dlq replay 0:17                         back to their source topic

Every REALTIME_* variable is listed in README.md ("Configuration")."""


class CliError(Exception):
    """An expected failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see {self.prog} --help)", 2)


def version() -> str:
    """The installed package's version (the source tree's when run uninstalled)."""
    try:
        return package_version("realtime")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        from realtime import __version__

        return __version__


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise CliError(f"configuration error: {exc}", 2) from None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def positive_seconds(value: str) -> float:
    """``--ttl``: a token that is born expired is never what was meant."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds (got {value})")
    return seconds


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return number


def invocation() -> str:
    """How to run this very command from a new shell.

    ``realtime`` only when it is on ``PATH`` and is this program; otherwise the script's
    path (``.venv/bin/realtime``) or ``python -m realtime`` with this interpreter.
    """
    import shutil

    def shown(path: Path) -> str:
        try:
            relative = path.relative_to(Path.cwd())
        except ValueError:
            return str(path)
        return str(relative) if "/" in str(relative) else f"./{relative}"

    script = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if script is None or script.name in ("__main__.py", "-c") or not script.exists():
        return f"{shown(Path(sys.executable))} -m realtime"
    on_path = shutil.which("realtime")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "realtime"
    return shown(script)


def cmd_serve(_: argparse.Namespace) -> int:
    from aiohttp import web

    from realtime.app import build_server
    from realtime.logs import configure_logging
    from realtime.metrics import GC_PAUSES
    from realtime.transport.gcpolicy import settle_after_startup

    settings = _settings()
    configure_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
        pass
    server = build_server(settings)

    def announce(_: str) -> None:  # aiohttp calls this once every listener is bound
        settle_after_startup()  # the start-up heap leaves the cyclic GC's way
        GC_PAUSES.reset()  # that deliberate collection held up no client
        if sys.stdout.isatty():  # a person: what to do next
            print(banner(settings), flush=True)
        else:  # a supervisor or container: logs only, one JSON line like every other
            startup_record(settings)

    try:
        web.run_app(server.app, host=settings.host, port=settings.port, print=announce,
                    shutdown_timeout=settings.shutdown_grace, handle_signals=True)
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.host}:{settings.port}: "
                       f"{exc.strerror or exc} (set REALTIME_HOST / REALTIME_PORT)") from None
    return 0


def base_url(settings: Settings) -> str:
    """The URL a local client uses (a wildcard listen address is reached on loopback)."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def startup_record(settings: Settings) -> None:
    """One JSON log line saying what this instance serves (logs are JSON, never prose)."""
    extra: dict[str, Any] = {
        "version": version(), "url": base_url(settings),
        "bus": "redis" if settings.redis_url else "memory",
        "kafka": settings.kafka_bootstrap, "devMode": settings.dev_mode,
    }
    if settings.dev_mode:
        extra["tokenCommand"] = f"{invocation()} token --sub alice --roles admin"
    logging.getLogger("realtime").info("serving", extra=extra)


def banner(settings: Settings) -> str:
    """What a person at a terminal needs next; every command in it works in a new shell."""
    where, run = base_url(settings), invocation()
    mode = "Redis" if settings.redis_url else "in-memory"
    kafka = f"Kafka at {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "Kafka off"
    url_flag = "" if settings.port == 8080 else f" --url {where}"
    lines = [f"realtime {version()} serving on {where} ({mode} fan-out, {kafka})"]
    if settings.dev_mode:
        lines.append("development mode: no REALTIME_JWT_SECRET set; tokens are signed with the "
                     "built-in public secret (never use this in production)")
    else:
        lines.append("tokens: mint them with the same REALTIME_JWT_SECRET in the environment")
    event = '{"id":"hello-1","type":"PUSH","event":"hello","rooms":["user:alice"],"data":{}}'
    lines += [
        f"  mint a token:      {run} token --sub alice --roles admin",
        f"  watch in a browser: {where}/demo?token=<the token>&events=hello",
        f"  connect Socket.IO: io(\"{where}\", {{auth: {{token}}}})",
        f"  publish an event:  echo '{event}' | {run} publish -{url_flag}",
        "  docs: README.md; API: " + where + "/api/v1/openapi.json; stop: Ctrl-C",
    ]
    return "\n".join(lines)


def cmd_token(args: argparse.Namespace) -> int:
    from realtime.auth.tokens import mint_token

    settings = _settings()
    secret = settings.effective_jwt_secret
    if not secret:
        raise CliError("token minting needs an HMAC secret (REALTIME_JWT_SECRET)", 2)
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
    name = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(f"cannot read {name}: {reason}", 2) from None
    if not text.strip():
        raise CliError(f"{name} holds no events", 2)
    try:
        data = orjson.loads(text)
        return data if isinstance(data, list) else [data]
    except orjson.JSONDecodeError:
        pass
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise CliError(f"{name} line {number}: not JSON ({exc}); expected an object, "
                               "a list, or one object per line", 2) from None
    return events


def refusal(status: int, text: str) -> str:
    """One line from an error answer (the uniform error JSON, or its first line)."""
    try:
        error = orjson.loads(text)["error"]
        return f"{status} {error['code']}: {error['message']}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{status} {(text.strip().splitlines() or [''])[0][:200]}"


def call_server(args: argparse.Namespace, method: str, path: str,
                body: Any = None) -> tuple[int, str]:
    """One request to the server named by ``--url`` with ``--token`` (default: a service
    token minted from the secret); connection trouble is one :class:`CliError` line."""
    import aiohttp

    from realtime.auth.tokens import mint_token

    settings = _settings()
    token = args.token
    if not token:
        secret = settings.effective_jwt_secret
        if not secret:
            raise CliError("pass --token (no HMAC secret to mint one)", 2)
        token = mint_token(secret, "realtime-cli", roles=[settings.service_role], ttl=300)
    base = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise CliError(f"--url: not an http(s) URL: {args.url!r}", 2)

    async def send() -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=args.timeout)
        data = orjson.dumps(body) if body is not None else None
        async with aiohttp.ClientSession(timeout=timeout) as session, session.request(
            method, f"{base}{path}", data=data, headers=headers
        ) as response:
            return response.status, await response.text()

    try:
        return asyncio.run(send())
    except aiohttp.ClientConnectorError as exc:
        number = exc.os_error.errno
        reason = os.strerror(number).lower() if number else str(exc.os_error)
        raise CliError(f"cannot reach {base} ({reason}); is `realtime serve` running? "
                       "(--url names another server)") from None
    except (aiohttp.InvalidURL, ValueError):
        raise CliError(f"--url: not a usable URL: {base!r}", 2) from None
    except TimeoutError:
        raise CliError(f"{base} did not answer within {args.timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise CliError(f"{method} {path} on {base} failed: {exc}") from None


def cmd_publish(args: argparse.Namespace) -> int:
    status, text = call_server(args, "POST", "/api/v1/publish", read_events(args.file))
    if status != 202:
        raise CliError(f"publish refused: {refusal(status, text)}")
    print(text)
    return 0


def _answer(what: str, status: int, text: str) -> int:
    if status != 200:
        raise CliError(f"{what} refused: {refusal(status, text)}")
    print(text)
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    body = {"reason": args.reason, "reconnect": args.reconnect}
    path = f"/api/v1/users/{quote(args.user, safe='')}/disconnect"
    return _answer("disconnect", *call_server(args, "POST", path, body))


def cmd_revoke(args: argparse.Namespace) -> int:
    if bool(args.jti) == bool(args.user) or (args.jti and args.issued_before):
        raise CliError("give --jti, or --user (with --issued-before)", 2)
    if args.jti:
        body: dict[str, Any] = {"jti": args.jti}
    else:
        body = {"userId": args.user, "issuedBefore": epoch_seconds(args.issued_before)}
    return _answer("revoke", *call_server(args, "POST", "/api/v1/tokens/revoke", body))


def epoch_seconds(value: str | None) -> float:
    """``--issued-before``: epoch seconds or ISO-8601 with a time zone; none means now."""
    if value is None:
        return time.time()
    with contextlib.suppress(ValueError):
        return float(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise CliError(f"--issued-before: not epoch seconds or ISO-8601 with a time zone: "
                       f"{value!r}", 2)
    return moment.timestamp()


def cmd_history(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit), **({"since": args.since} if args.since else {})}
    path = f"/api/v1/rooms/{quote(args.room, safe=':@|')}/history?{urlencode(query)}"
    return _answer("history", *call_server(args, "GET", path))


async def _check_kafka(settings: Settings) -> None:
    """Bootstrap once (and close the client) so an unreachable broker is one clear line."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import KafkaError

    from realtime.kafka.config import client_options

    client = AIOKafkaClient(**client_options(settings, "-cli"))
    try:
        await client.bootstrap()
    except KafkaError:
        raise CliError(f"cannot reach Kafka at {settings.kafka_bootstrap} (no broker answered; "
                       "check REALTIME_KAFKA_BOOTSTRAP and the REALTIME_KAFKA_SECURITY_* / "
                       "SASL settings)") from None
    finally:
        await client.close()


def cmd_dlq(args: argparse.Namespace) -> int:
    from aiokafka.errors import KafkaError

    from realtime.kafka.dlq import read_dead_letters, replay_dead_letters

    settings = _settings()
    if not settings.kafka_bootstrap:
        raise CliError("set REALTIME_KAFKA_BOOTSTRAP to read dead letters", 2)
    if args.action == "replay" and not args.refs:
        raise CliError("name the dead letters to replay (PARTITION:OFFSET)", 2)

    async def run() -> list[str]:
        await _check_kafka(settings)
        if args.action == "list":
            letters = await read_dead_letters(settings, args.limit)
            return [orjson.dumps(letter.summary()).decode() for letter in letters]
        return [f"replayed {line}" for line in await replay_dead_letters(settings, args.refs)]

    try:
        lines = asyncio.run(run())
    except LookupError as exc:
        raise CliError(str(exc).strip("'\"")) from None
    except (KafkaError, TimeoutError, OSError) as exc:
        raise CliError(f"Kafka at {settings.kafka_bootstrap}: "
                       f"{exc or type(exc).__name__}") from None
    for line in lines:
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="realtime", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"realtime {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server (configured by REALTIME_* variables)")
    serve.set_defaults(func=cmd_serve)
    token = sub.add_parser("token", help="mint a development token (signed with the "
                                         "configured or the built-in development secret)")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--roles", help="comma-separated roles, e.g. admin,service")
    token.add_argument("--orders", help="comma-separated order ids the user may watch")
    token.add_argument("--ttl", type=positive_seconds, default=3600.0,
                       help="lifetime in seconds (default 3600)")
    token.set_defaults(func=cmd_token)
    publish = sub.add_parser("publish", help="send events to POST /api/v1/publish")
    publish.add_argument("file", help="JSON file (object, list or JSON lines), or - for stdin")
    publish.set_defaults(func=cmd_publish)
    disconnect = sub.add_parser("disconnect", help="end every connection of a user, on "
                                                   "every instance")
    disconnect.add_argument("user", help="user id (the tokens' sub)")
    disconnect.add_argument("--reason", default="disconnected",
                            help="code the clients are told (default disconnected)")
    disconnect.add_argument("--reconnect", action="store_true",
                            help="let the clients reconnect (default: they must not)")
    disconnect.set_defaults(func=cmd_disconnect)
    revoke = sub.add_parser("revoke", help="revoke a token (--jti), or a user's tokens issued "
                                           "before a time (--user, --issued-before)")
    revoke.add_argument("--jti", help="the token's jti claim")
    revoke.add_argument("--user", help="user id: revoke the tokens issued before "
                                       "--issued-before")
    revoke.add_argument("--issued-before", help="epoch seconds or ISO-8601 with a time zone "
                                                "(default: now)")
    revoke.set_defaults(func=cmd_revoke)
    history = sub.add_parser("history", help="a room's retained events, oldest first")
    history.add_argument("room", help="room name, e.g. order:42")
    history.add_argument("--since", help="only after this position (as delivered)")
    history.add_argument("--limit", type=positive_int, default=100,
                         help="at most this many (default 100, at most 1000)")
    history.set_defaults(func=cmd_history)
    for client in (publish, disconnect, revoke, history):
        client.add_argument("--url",
                            help="server base URL (default http://127.0.0.1:$REALTIME_PORT)")
        client.add_argument("--token", help="service token (default: minted from the secret)")
        client.add_argument("--timeout", type=positive_seconds, default=30.0,
                            help="seconds to wait for the answer (default 30)")
    dlq = sub.add_parser("dlq", help="list dead letters, or replay them to their source topic")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("refs", nargs="*", help="for replay: PARTITION:OFFSET as printed by list")
    dlq.add_argument("--limit", type=positive_int, default=1000,
                     help="at most this many (list; default 1000)")
    dlq.set_defaults(func=cmd_dlq)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Client commands keep library chatter (aiokafka's connection errors) off the terminal:
    # their own failure is the one line below.
    logging.basicConfig(level=logging.CRITICAL)
    try:
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
    except CliError as exc:
        print(f"realtime: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
