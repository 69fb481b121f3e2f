"""The `realtime` command line: serve (zero configuration), token, publish, dlq, --version.

Expected failures answer with one line on stderr and a non-zero status, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path

import aiohttp
import jwt
import orjson
import pytest
import socketio

from realtime.settings import DEV_JWT_SECRET
from support.clients import connected
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames
from support.server import ServerProcess, free_port

VENV_BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str], stdin: str | None = None,
        python: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *python, "-m", "realtime", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> str:
    result = run(*args, env=env, stdin=stdin)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def fails(*args: str, env: dict[str, str], code: int, stdin: str | None = None) -> str:
    """Run a command that must fail with ``code`` and exactly one line on stderr.

    ResourceWarnings are shown, so a Kafka or HTTP client left open would add lines.
    """
    result = run(*args, env=env, stdin=stdin, python=("-W", "always::ResourceWarning"))
    lines = result.stderr.splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("realtime: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def bare_env(**extra: str) -> dict[str, str]:
    """No REALTIME_* configuration at all (except what the test names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALTIME_")}
    return {**env, **extra}


def new_shell_env(**extra: str) -> dict[str, str]:
    """A new terminal: no REALTIME_* variables and no virtualenv on PATH."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN]
    return {**bare_env(**extra), "PATH": os.pathsep.join(path)}


def in_new_shell(command: str, cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=new_shell_env(),
                            input=stdin, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command!r} failed in a new shell: {result.stderr}"
    return result.stdout


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line must be one JSON log record."""
    records = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records), text
    return records


@contextlib.asynccontextmanager
async def serving(argv: list[str], env: dict[str, str], cwd: Path, *,
                  tty: bool) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``realtime serve`` with stdout on a pseudo-terminal (``tty``) or a pipe."""
    master, slave = pty.openpty() if tty else (-1, -1)
    proc = await asyncio.create_subprocess_exec(
        *argv, "serve", env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=slave if tty else asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    if tty:
        os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        if tty:
            os.close(master)


async def read_terminal(master: int, until: bytes) -> str:
    text = b""
    async with asyncio.timeout(20):
        while until not in text:
            text += await asyncio.to_thread(os.read, master, 4096)
    return text.decode().replace("\r\n", "\n")


async def test_serve_on_a_terminal_prints_commands_that_work_in_a_new_shell(
        tmp_path: Path) -> None:
    port = free_port()
    env = bare_env(REALTIME_PORT=str(port), REALTIME_HOST="127.0.0.1")
    script = VENV_BIN / "realtime"  # as installed by `pip install .`
    async with serving([str(script)], env, tmp_path, tty=True) as (proc, master):
        text = await read_terminal(master, b"stop: Ctrl-C")
        assert f"serving on http://127.0.0.1:{port} (in-memory fan-out, Kafka off)" in text
        assert "development mode" in text
        mint = re.search(r"mint a token: +(.+)", text)
        publish = re.search(r"publish an event: +(.+)", text)
        assert mint and publish, text
        # Printed as the path that runs it: a bare `realtime` is not on a new shell's PATH.
        assert mint.group(1).startswith(str(script)), mint.group(1)
        token = in_new_shell(mint.group(1), tmp_path).strip()
        async with connected(f"http://127.0.0.1:{port}", token) as client:
            answer = orjson.loads(in_new_shell(publish.group(1), tmp_path))
            assert answer["accepted"] == ["hello-1"]
            assert (await client.wait_for("hello"))[0]["eventId"] == "hello-1"
        proc.terminate()
        assert proc.stderr is not None
        json_lines((await proc.stderr.read()).decode())  # logs stay JSON on a terminal too


async def test_serve_without_a_terminal_logs_one_json_startup_record(tmp_path: Path) -> None:
    port = free_port()
    env = bare_env(REALTIME_PORT=str(port), REALTIME_HOST="127.0.0.1")
    async with serving([sys.executable, "-m", "realtime"], env, tmp_path,
                       tty=False) as (proc, _):
        assert proc.stderr is not None and proc.stdout is not None
        async with asyncio.timeout(20):
            first = orjson.loads(await proc.stderr.readline())
        assert first["msg"] == "serving" and first["devMode"] is True
        assert first["url"] == f"http://127.0.0.1:{port}" and first["version"] == version(
            "realtime")
        token = in_new_shell(str(first["tokenCommand"]), tmp_path).strip()
        async with connected(f"http://127.0.0.1:{port}", token) as client:
            assert client.client.connected
        async with aiohttp.ClientSession() as session:  # hostile input: a JSON log line at most
            async with session.post(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling"
                                    "&sid=nope", data=b"\xff") as response:
                assert response.status == 400
        proc.terminate()
        stdout, stderr = await proc.communicate()
    assert stdout == b""  # no prose mixed into what a supervisor collects
    records = json_lines(stderr.decode())  # every line parses as JSON
    assert records and not any("exc" in r for r in records), records


def test_token_carries_the_requested_claims() -> None:
    out = cli("token", "--sub", "u7", "--roles", "a,b", "--orders", "1,2", "--ttl", "60",
              env=bare_env())
    claims = jwt.decode(out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "u7" and claims["roles"] == ["a", "b"]
    assert claims["orders"] == ["1", "2"] and claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("ttl", ["0", "-5", "nan", "inf", "soon"])
def test_token_ttl_must_be_positive(ttl: str) -> None:
    line = fails("token", "--sub", "u", "--ttl", ttl, env=bare_env(), code=2)
    assert "--ttl" in line and "realtime token --help" in line


def test_help_lists_every_command_and_version_is_the_package_version() -> None:
    text = cli("--help", env=bare_env())
    for command in ("serve", "token", "publish", "disconnect", "revoke", "history", "dlq"):
        assert re.search(rf"^\s+{command}\s+\w", text, re.MULTILINE), (command, text)
    assert cli("--version", env=bare_env()).strip() == f"realtime {version('realtime')}"
    line = fails(env=bare_env(), code=2)
    assert "COMMAND" in line


async def test_publish_from_file_and_stdin(tmp_path: Path) -> None:
    server = await ServerProcess().start()
    try:
        env = {**server.env}
        token = cli("token", "--sub", "reader", env=env).strip()
        async with connected(server.url, token) as client:
            event = {"type": "PUSH", "event": "cli", "rooms": ["user:reader"]}
            single = tmp_path / "one.json"
            single.write_bytes(orjson.dumps({**event, "id": "f1"}))
            listing = tmp_path / "list.json"
            listing.write_bytes(orjson.dumps([{**event, "id": "f2"}, {**event, "id": "f3"}]))
            await asyncio.to_thread(cli, "publish", str(single), env=env)
            await asyncio.to_thread(cli, "publish", str(listing), env=env)
            lines = "\n".join(orjson.dumps({**event, "id": f"s{n}"}).decode() for n in (4, 5))
            out = await asyncio.to_thread(cli, "publish", "-", env=env, stdin=lines)
            assert orjson.loads(out)["accepted"] == ["s4", "s5"]
            received = await client.wait_for("cli", count=5)
            assert [r["eventId"] for r in received] == ["f1", "f2", "f3", "s4", "s5"]
            refused = await asyncio.to_thread(
                fails, "publish", "-", "--token", "nope", env=env, code=1, stdin=lines)
            assert refused.startswith("realtime: publish refused: 401 invalid_token: "), refused
    finally:
        server.kill()


async def test_publish_refuses_hostile_events_in_one_line_and_delivers_nothing() -> None:
    """The CLI goes through the same validation as HTTP and Kafka: deep, reserved, injected
    and malformed events are refused (one line, exit 1), a batch with one of them publishes
    nothing, and a good event after them is still delivered."""
    server = await ServerProcess().start()
    try:
        env = {**server.env}
        token = cli("token", "--sub", "cli-reader", env=env).strip()
        good = {"id": "good", "type": "PUSH", "event": "ok", "rooms": ["user:cli-reader"]}
        hostile = [
            {**good, "id": "deep", "data": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]
                                                   ]]]]]]]]]]]]]]]]]]]]]]}},
            {**good, "id": "reserved", "event": "message"},
            {**good, "id": "injected", "event": "ok\nid: 999"},
            {**good, "id": "no-rooms", "rooms": []},
            {"id": "no-type"},
        ]
        async with connected(server.url, token) as client:
            for event in hostile:
                line = await asyncio.to_thread(
                    fails, "publish", "-", env=env, code=1,
                    stdin=orjson.dumps([good, event]).decode())
                assert line.startswith("realtime: publish refused: 400 "), line
            await asyncio.to_thread(cli, "publish", "-", env=env,
                                    stdin=orjson.dumps({**good, "id": "after"}).decode())
            [delivered] = await client.wait_for("ok")
            assert delivered["eventId"] == "after"
    finally:
        server.kill()


def test_publish_with_the_server_down_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    line = fails("publish", "-", env=bare_env(REALTIME_PORT=str(port)), code=1,
                 stdin='{"id": "1", "type": "PUSH", "event": "e", "rooms": ["r"]}')
    assert f"cannot reach http://127.0.0.1:{port} (connection refused)" in line


@pytest.mark.parametrize("args, stdin, expected", [
    (["publish", "-"], "{nope", "stdin line 1: not JSON"),
    (["publish", "-"], "  \n", "stdin holds no events"),
    (["publish", "/no/such/file.json"], None, "cannot read /no/such/file.json"),
    (["publish", "-", "--url", "localhost:8080"], "{}", "--url: not an http(s) URL"),
    (["dlq", "list"], None, "set REALTIME_KAFKA_BOOTSTRAP"),
    (["revoke"], None, "give --jti, or --user"),
    (["revoke", "--jti", "j", "--user", "u"], None, "give --jti, or --user"),
    (["revoke", "--user", "u", "--issued-before", "2024-01-01"], None, "with a time zone"),
    (["history", "user:u", "--limit", "0"], None, "--limit: must be at least 1"),
    (["dlq", "list", "--limit", "0"], None, "--limit: must be at least 1"),
])
def test_bad_input_is_one_line(args: list[str], stdin: str | None, expected: str) -> None:
    assert expected in fails(*args, env=bare_env(), code=2, stdin=stdin)


async def test_disconnect_revoke_and_history_commands() -> None:
    """The control commands against a real server: answers on stdout, refusals in one line."""
    server = await ServerProcess().start()
    try:
        env = {**server.env}
        token = cli("token", "--sub", "cli-user", env=env).strip()
        async with connected(server.url, token) as client:
            await asyncio.to_thread(cli, "publish", "-", env=env, stdin=orjson.dumps(
                {"id": "h1", "type": "PUSH", "event": "ok", "rooms": ["user:cli-user"]}).decode())
            await client.wait_for("ok")
            out = await asyncio.to_thread(cli, "history", "user:cli-user", env=env)
            assert [e["payload"]["eventId"] for e in orjson.loads(out)["events"]] == ["h1"]
            out = await asyncio.to_thread(cli, "disconnect", "cli-user", "--reason", "bye",
                                          env=env)
            assert orjson.loads(out)["disconnected"] == 1
            await client.wait_disconnected()
            assert client.named("disconnected") == [{"reason": "bye", "reconnect": False}]
        out = await asyncio.to_thread(cli, "revoke", "--user", "cli-user", "--issued-before",
                                      "2999-01-01T00:00:00+00:00", env=env)
        assert orjson.loads(out)["revoked"] is True
        with pytest.raises(socketio.exceptions.ConnectionError):
            async with connected(server.url, token):
                pass
        line = await asyncio.to_thread(fails, "history", "not a room", env=env, code=1)
        assert line.startswith("realtime: history refused: 400 invalid_request: "), line
        line = await asyncio.to_thread(fails, "disconnect", "u", "--reason", "two words",
                                       env=env, code=1)
        assert line.startswith("realtime: disconnect refused: 400 invalid_command: "), line
    finally:
        server.kill()


def test_configuration_error_is_one_line() -> None:
    line = fails("token", "--sub", "u", env=bare_env(REALTIME_JWT_SECRET="short"), code=2)
    assert line.startswith("realtime: configuration error: REALTIME_JWT_SECRET")


def test_dlq_with_kafka_unreachable_is_one_line_and_closes_its_clients() -> None:
    port = free_port()  # nothing listens there
    line = fails("dlq", "list", env=bare_env(REALTIME_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}"),
                 code=1)
    assert f"cannot reach Kafka at 127.0.0.1:{port}" in line


async def test_dlq_list_and_replay_against_a_broker(kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    producer = kafka_broker.producer()
    await producer.start()
    try:
        await producer.send_and_wait(names.dlq, b"not json", key=b"k", headers=[
            ("x-dlq-reason", b"invalid_json"), ("x-dlq-source-topic", names.publish.encode()),
            ("x-dlq-source-partition", b"0"), ("x-dlq-source-offset", b"7")])
    finally:
        await producer.stop()
    env = bare_env(**names.env(kafka_broker))
    result = await asyncio.to_thread(run, "dlq", "list", env=env,
                                     python=("-W", "always::ResourceWarning"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    [letter] = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert letter["ref"] == "0:0" and letter["reason"] == "invalid_json"
    assert letter["source"]["topic"] == names.publish and letter["value"] == "not json"
    missing = await asyncio.to_thread(fails, "dlq", "replay", "0:99", env=env, code=1)
    assert missing == "realtime: no dead letter at 0:99"


def test_serve_on_a_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = fails("serve", env=bare_env(REALTIME_PORT=str(port), REALTIME_HOST="127.0.0.1",
                                           REALTIME_LOG_LEVEL="ERROR"), code=1)
    assert line.startswith(f"realtime: cannot listen on 127.0.0.1:{port}: "), line
