"""The official JavaScript client (socket.io-client 4, ``tests/js/client.mjs``) as a subprocess."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent.parent / "js"


def _ensure_node_modules() -> None:
    assert shutil.which("node"), "node is required for the official-client test"
    assert (JS_DIR / "node_modules" / "socket.io-client").exists(), \
        "run `npm ci` in tests/js (scripts/test.sh does)"


class JsClient:
    """``node client.mjs`` as a subprocess; its stdout is a JSON line per happening.

    ``script`` runs another driver of the official client in ``tests/js`` (``many.mjs``: many
    clients in one process) with the same arguments, commands and output lines."""

    def __init__(self, url: str, config: dict[str, Any], script: str = "client.mjs") -> None:
        self.url, self.config, self.script = url, config, script
        self.lines: list[dict[str, Any]] = []
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> JsClient:
        _ensure_node_modules()
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / self.script), self.url, json.dumps(self.config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        return self

    async def send(self, command: dict[str, Any]) -> None:
        """A command for the client (``drop``, ``emit``, ``exit``: see ``client.mjs``)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def until(self, *kinds: str, limit: float = 10.0) -> dict[str, Any]:
        """The next line of one of ``kinds`` (the lines before it are kept in ``lines``)."""
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(limit):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    stderr = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"node exited before {kinds}: {self.lines} {stderr!r}")
                self.lines.append(json.loads(line))
                if self.lines[-1]["type"] in kinds:
                    return self.lines[-1]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["type"] == kind]

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), 10)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
