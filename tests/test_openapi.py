"""The OpenAPI document is served, matches the repo copy, and the server conforms to it
(schemathesis: schema-valid requests accepted, invalid ones refused, responses match)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import aiohttp

from realtime.routing import RESERVED_EVENTS
from realtime.routing.names import EVENT_NAME
from support.server import ServerProcess, token

DOC = Path(__file__).resolve().parent.parent / "realtime" / "openapi.json"


async def test_served_document_is_the_repo_copy() -> None:
    server = await ServerProcess().start()
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"{server.url}/api/v1/openapi.json") as response:
            assert response.status == 200
            assert await response.json() == json.loads(DOC.read_text())
    finally:
        server.kill()


async def test_server_conforms_to_its_openapi_document() -> None:
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    server = await ServerProcess({"REALTIME_PUBLISH_RATE_PER_SECOND": "100000",
                                  "REALTIME_PUBLISH_BURST": "100000"}).start()
    try:
        proc = await asyncio.create_subprocess_exec(
            st, "run", f"{server.url}/api/v1/openapi.json",
            "-H", f"Authorization: Bearer {token('svc', ['service'])}",
            "--checks", "all", "--max-examples", "40", "--seed", "4242",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-3000:]
        assert "passed" in text
    finally:
        server.kill()


def test_document_states_the_event_name_rules_of_the_code() -> None:
    doc = json.loads(DOC.read_text())
    name = doc["components"]["schemas"]["Push"]["properties"]["event"]
    assert name["not"]["enum"] == sorted(RESERVED_EVENTS)
    assert name["pattern"] == f"^{EVENT_NAME.pattern}$"
    assert "409" in doc["paths"]["/api/v1/publish"]["post"]["responses"]
    assert "503" in doc["paths"]["/api/v1/rooms/{room}/presence"]["get"]["responses"]
