"""README.md stays true: every fenced block is run, or checked, in document order.

An HTML comment right before each fence says how:

- ``<!-- run: sh; OPTIONS -->`` bash (``set -euo pipefail``) in a scratch directory. Options:
  ``background=NAME`` keeps it running (a later block of the same name replaces it, as a
  reader restarting the server does; the other running clients must then reconnect),
  ``wait=/PATH`` (until the server answers 200 there) or ``wait=TEXT`` (until it is printed),
  ``expect=A,B`` (texts the output must contain; for background blocks, by the end).
- ``<!-- run: browser; user=U; OPTIONS -->`` an HTML page, served and opened in headless
  Chromium with ``?token=`` minted for user U; the page's text is its output.
- ``<!-- file: NAME -->`` saved as NAME; a later block must use it.
- ``<!-- check: install|npm|pip -->`` install commands: compared with what the repository
  provides instead of installing again.
- ``<!-- not run: REASON -->``.

The scratch directory holds ``.venv`` (this virtualenv) and ``node_modules`` (tests/js's
socket.io-client), as a reader's folder would. ``localhost:8080`` becomes a free port,
``localhost:9092`` the test broker, and the CDN address of socket.io.min.js a local copy of
the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from realtime.cli import build_parser
from support.browser import Page, chromium
from support.kafka import KafkaBroker
from support.server import free_port

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
MARKER = re.compile(r"<!--\s*(run|file|check|not run):\s*(.*?)\s*-->")
CLIENT_VERSION = json.loads((JS / "package.json").read_text())["dependencies"]["socket.io-client"]
CDN = f"https://cdn.socket.io/{CLIENT_VERSION}/socket.io.min.js"


@dataclass
class Block:
    line: int
    lang: str
    code: str
    kind: str  # run | file | check | not run
    what: str  # sh | browser; the file name; install | npm | pip; the reason
    options: dict[str, str] = field(default_factory=dict)

    def where(self) -> str:
        return f"README.md:{self.line} ({self.kind}: {self.what})"

    @property
    def expect(self) -> list[str]:
        return [t for t in self.options.get("expect", "").split(",") if t]


def readme_blocks() -> list[Block]:
    """Every fenced block with the marker before it; a block without one fails."""
    lines = (ROOT / "README.md").read_text().splitlines()
    blocks, number = [], 0
    while number < len(lines):
        stripped = lines[number].lstrip()
        if not stripped.startswith("```"):
            number += 1
            continue
        indent, start = len(lines[number]) - len(stripped), number
        body: list[str] = []
        number += 1
        while number < len(lines) and lines[number].strip() != "```":
            body.append(lines[number][indent:])
            number += 1
        number += 1
        before = next((lines[i].strip() for i in range(start - 1, -1, -1) if lines[i].strip()),
                      "")
        marker = MARKER.fullmatch(before)
        assert marker, (f"README.md:{start + 1}: a fenced block needs a marker before it, e.g. "
                        "<!-- run: sh --> or <!-- not run: why -->")
        kind, rest = marker.groups()
        if kind == "not run":
            blocks.append(Block(start + 1, stripped[3:].strip(), "\n".join(body), kind, rest))
            continue
        what, *pairs = [part.strip() for part in rest.split(";")]
        options = dict(pair.split("=", 1) if "=" in pair else (pair, "") for pair in pairs)
        blocks.append(Block(start + 1, stripped[3:].strip(), "\n".join(body) + "\n", kind,
                            what, options))
    return blocks


def check_install_command(block: Block) -> None:
    """Install commands are not re-run (they would rebuild the virtualenv under the test)."""
    command = block.code.strip()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    if block.what == "install" and command.startswith("python3 -m venv"):
        assert command == ("python3 -m venv .venv && .venv/bin/pip install . && "
                           ".venv/bin/realtime serve"), block.where()
        assert pyproject["project"]["scripts"]["realtime"] == "realtime.cli:main"
        assert "serve" in build_parser().parse_args(["serve"]).command
    elif block.what == "install":
        assert command == "bash scripts/test.sh", block.where()
        assert (ROOT / "scripts" / "test.sh").is_file()
        assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
    elif block.what == "npm":
        assert command == f"npm install socket.io-client@{CLIENT_VERSION.split('.')[0]}", \
            block.where()
    elif block.what == "pip":
        wanted = next(d for d in pyproject["project"]["dependencies"]
                      if d.startswith("python-socketio"))
        version = wanted.split(">=")[1].split(",")[0]
        assert command == f'pip install "python-socketio[asyncio_client]>={version}"', \
            block.where()
    else:
        raise AssertionError(f"{block.where()}: unknown check")


def test_every_block_is_marked_and_every_file_is_used() -> None:
    blocks = readme_blocks()
    assert blocks
    for index, block in enumerate(blocks):
        if block.kind == "not run":
            assert len(block.what) > 10, f"{block.where()}: say why it is not run"
        elif block.kind == "check":
            check_install_command(block)
        elif block.kind == "file":
            assert any(block.what in later.code for later in blocks[index + 1:]
                       if later.kind == "run"), f"{block.where()}: no later block runs it"
        else:
            assert block.what in ("sh", "browser"), block.where()
    assert CDN in "".join(b.code for b in blocks), "the browser example loads another version"


def occurrences(text: str, wanted: str) -> int:
    """Whole-word matches: "connected" is not counted inside "disconnected"."""
    return len(re.findall(rf"(?<![\w-]){re.escape(wanted)}(?![\w-])", text))


class Background:
    """A block left running: a process group (shell blocks) or a browser page."""

    def __init__(self, block: Block) -> None:
        self.block = block
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None
        self.page: Page | None = None

    async def output(self) -> str:
        if self.page is not None:
            return str(await self.page.evaluate("document.body?.innerText") or "")
        assert self.log is not None
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None

    async def stop(self) -> None:
        """Ctrl-C, as the reader does; killed if it lingers (graceful shutdown has its own
        tests in test_operations.py, and the README must stay fast)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, 3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Reader:
    """Follows the README as a reader would, in one scratch folder and one server port."""

    def __init__(self, scratch: Path, broker: KafkaBroker, stack: contextlib.AsyncExitStack):
        self.scratch, self.broker, self.stack = scratch, broker, stack
        self.port = free_port()
        self.running: dict[str, Background] = {}
        venv_bin = Path(sys.executable).parent
        path = [p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != venv_bin]
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("REALTIME_") and k != "VIRTUAL_ENV"}
        self.env.update(PATH=os.pathsep.join(path), REALTIME_PORT=str(self.port),
                        REALTIME_HOST="127.0.0.1")
        (scratch / ".venv").symlink_to(sys.prefix)
        (scratch / "node_modules").symlink_to(JS / "node_modules")
        self.static_port: int | None = None
        self.timings: list[tuple[float, str]] = []

    def adapt(self, code: str) -> str:
        return (code.replace("localhost:8080", f"localhost:{self.port}")
                .replace("localhost:9092", self.broker.bootstrap)
                .replace(CDN, "/socket.io.min.js"))

    async def follow(self, block: Block) -> None:
        began = time.monotonic()
        await self._follow(block)
        self.timings.append((time.monotonic() - began, block.where()))

    async def _follow(self, block: Block) -> None:
        if block.kind == "file":
            (self.scratch / block.what).write_text(self.adapt(block.code))
        elif block.kind == "run" and block.what == "browser":
            await self.open_page(block)
        elif block.kind == "run" and "background" in block.options:
            await self.start(block)
        elif block.kind == "run":
            await self.run(block)

    async def run(self, block: Block) -> None:
        result = await asyncio.to_thread(
            subprocess.run, ["bash", "-c", "set -euo pipefail\n" + self.adapt(block.code)],
            cwd=self.scratch, env=self.env, capture_output=True, text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.where()} exited {result.returncode}:\n{output}"
        for text in block.expect:
            assert text in output, f"{block.where()}: {text!r} not in:\n{output}"

    async def start(self, block: Block) -> None:
        name = block.options["background"] or f"line{block.line}"
        previous = self.running.pop(name, None)
        if previous is not None:
            await previous.stop()
        seen = {other: occurrences(await other.output(), other.block.options["wait"])
                for other in self.running.values()
                if not other.block.options.get("wait", "/").startswith("/")}
        job = Background(block)
        job.log = self.scratch / f".{name}.log"
        with job.log.open("wb") as log:
            job.proc = subprocess.Popen(
                ["bash", "-c", "set -euo pipefail\n" + self.adapt(block.code)],
                cwd=self.scratch, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.running[name] = job
        await self.wait(job, block.options.get("wait", ""))
        if previous is not None:  # the clients still running must come back by themselves
            for other, count in seen.items():
                await self.wait(other, other.block.options["wait"], count + 1)

    async def open_page(self, block: Block) -> None:
        (self.scratch / "page.html").write_text(self.adapt(block.code))
        if self.static_port is None:
            self.static_port = await self.serve_scratch()
        token = await asyncio.to_thread(
            subprocess.run, [".venv/bin/realtime", "token", "--sub", block.options["user"]],
            cwd=self.scratch, env=self.env, capture_output=True, text=True, check=True)
        url = f"http://127.0.0.1:{self.static_port}/page.html?token={token.stdout.strip()}"
        job = Background(block)
        job.page = await self.stack.enter_async_context(chromium(url))
        self.running[f"browser{block.line}"] = job
        await self.wait(job, block.options.get("wait", ""))

    async def serve_scratch(self) -> int:
        """The reader's own web server for the page (another origin than the push server)."""
        dist = JS / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"

        async def client(_: web.Request) -> web.FileResponse:
            return web.FileResponse(dist)

        app = web.Application()
        app.router.add_get("/socket.io.min.js", client)
        app.router.add_static("/", self.scratch)
        runner = web.AppRunner(app)
        await runner.setup()
        self.stack.push_async_callback(runner.cleanup)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return port

    async def wait(self, job: Background, until: str, count: int = 1) -> None:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            assert job.alive(), f"{job.block.where()} exited:\n{await job.output()}"
            if not until:
                return
            if until.startswith("/"):
                with contextlib.suppress(aiohttp.ClientError):
                    async with aiohttp.ClientSession() as session, \
                            session.get(f"http://127.0.0.1:{self.port}{until}") as response:
                        if response.status == 200:
                            return
            elif occurrences(await job.output(), until) >= count:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{job.block.where()}: no {until!r} (x{count}) within 40 s:\n"
                             f"{await job.output()}")

    async def finish(self) -> None:
        """Every background block printed what it expects; then everything stops."""
        try:
            for job in self.running.values():
                deadline = time.monotonic() + 15
                while True:
                    output = await job.output()
                    missing = [t for t in job.block.expect if t not in output]
                    if not missing:
                        break
                    assert time.monotonic() < deadline, \
                        f"{job.block.where()}: {missing} not in:\n{output}"
                    await asyncio.sleep(0.1)
        finally:
            for job in self.running.values():
                await job.stop()


@contextlib.asynccontextmanager
async def reader(scratch: Path, broker: KafkaBroker) -> AsyncIterator[Reader]:
    async with contextlib.AsyncExitStack() as stack:
        follower = Reader(scratch, broker, stack)
        try:
            yield follower
        finally:
            for job in follower.running.values():
                await job.stop()


async def test_readme_commands_and_snippets_work(tmp_path: Path,
                                                 kafka_broker: KafkaBroker) -> None:
    for tool in ("bash", "curl", "node"):  # what a reader's shell has; chromium: support/browser
        assert shutil.which(tool), f"{tool} is required to follow the README"
    started = time.monotonic()
    async with reader(tmp_path, kafka_broker) as follower:
        for block in readme_blocks():
            await follower.follow(block)
        await follower.finish()
        slowest = sorted(follower.timings, reverse=True)[:5]
    print(f"\nREADME followed in {time.monotonic() - started:.1f} s; slowest blocks: "
          + ", ".join(f"{where} {seconds:.1f} s" for seconds, where in slowest))
