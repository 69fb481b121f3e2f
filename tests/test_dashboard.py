"""The Grafana dashboard only queries metric names the server really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from support.server import run_server

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/realtime-dashboard.json"


async def test_dashboard_queries_exported_metrics() -> None:
    async with run_server() as srv, aiohttp.ClientSession() as session, \
            session.get(f"{srv.url}/metrics") as response:
        text = await response.text()
    exported = set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queried = {name for panel in panels for target in panel["targets"]
               for name in re.findall(r"realtime_\w+", target["expr"])}
    assert queried and queried <= exported, queried - exported
