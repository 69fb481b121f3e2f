"""A real browser: headless Chromium runs the demo page's native EventSource."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from support.browser import Page, chromium
from support.kafka import KafkaBroker
from support.kafka_helpers import KafkaNames, produce, wait_ready
from support.server import run_server, token

IDS = "JSON.stringify([...document.querySelectorAll('#events li')].map(li => li.dataset.id))"


async def shown(page: Page, count: int, limit: float = 20.0) -> list[Any]:
    ids: list[Any] = []
    async with asyncio.timeout(limit):
        while len(ids) < count:
            ids = [i for i in json.loads(await page.evaluate(IDS)) if i is not None]
            await asyncio.sleep(0.1)
    return ids


def push(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "type": "PUSH", "event": "demo", "rooms": ["user:web"],
            "data": {"text": event_id}}


async def test_demo_page_shows_events_and_resumes_after_a_drop(
        kafka_broker: KafkaBroker) -> None:
    names = KafkaNames()
    await names.create(kafka_broker)
    async with run_server(**names.settings(kafka_broker)) as srv:
        await wait_ready(srv.url)
        url = f"{srv.url}/demo?token={token('web')}&events=demo"
        async with chromium(url) as page:
            async with asyncio.timeout(20):
                while await page.evaluate("document.getElementById('status')?.textContent") \
                        != "connected":
                    await asyncio.sleep(0.1)
            await srv.publish([push("h1"), push("h2")])
            await produce(kafka_broker, names.publish, [push("k1")])
            assert await shown(page, 3) == ["h1", "h2", "k1"]

            # The server drops the stream; events published meanwhile must not be lost.
            await srv.server.sse.close_all("test_drop")
            await srv.publish([push(f"gap{n}") for n in range(5)])
            await produce(kafka_broker, names.publish, [push("k2")])
            ids = await shown(page, 9)
            assert ids == ["h1", "h2", "k1", "gap0", "gap1", "gap2", "gap3", "gap4", "k2"]
            recovered = await page.evaluate(
                "[...document.querySelectorAll('#events li')]"
                ".filter(li => li.dataset.event === 'recovered').map(li => li.textContent)")
            assert recovered and '"recovered":true' in recovered[-1]
            # The page counts what the resume brought and shows the last position.
            stats = await page.evaluate(STATS)
            assert stats["recovered"] == "1" and stats["lost"] == "0", stats
            assert 5 <= int(stats["replayed"]) <= 6, stats  # k2 may arrive live instead
            last = await page.evaluate(
                "JSON.parse([...document.querySelectorAll('#events li')]"
                ".filter(li => li.dataset.id === 'k2')[0].textContent.slice(5)).position")
            assert stats["position"] == last and stats["state"] == "connected", stats


STATS = ("document.getElementById('stats') && "  # null until the page is parsed
         "Object.fromEntries(['recovered', 'lost', 'replayed', 'position', 'status']"
         ".map(id => [id, document.getElementById(id).textContent])"
         ".concat([['state', document.getElementById('status').dataset.state]]))")


@pytest.mark.parametrize("kind, reason", [
    ("garbage", "401 invalid_token: "),
    ("expired", "401 expired: "),
    ("forbidden order", "403 forbidden: "),
])
async def test_demo_page_says_why_it_cannot_connect(kind: str, reason: str) -> None:
    async with run_server() as srv:
        query = {"garbage": "token=not-a-jwt",
                 "expired": f"token={token('web', ttl=-60)}",
                 "forbidden order": f"token={token('web')}&orders=o-elsewhere"}[kind]
        async with chromium(f"{srv.url}/demo?{query}") as page:
            stats: dict[str, str] = {}
            async with asyncio.timeout(20):
                while stats.get("state") != "refused":
                    stats = await page.evaluate(STATS) or {}
                    await asyncio.sleep(0.1)
            assert stats["status"].startswith("cannot connect: " + reason), stats
            await asyncio.sleep(2.5)  # longer than the SSE retry: it stays refused, says why
            assert await page.evaluate(STATS) == stats
