"""Order rooms: who may watch an order, the status snapshot, and the callback's guards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from support.clients import connected, quiet
from support.server import free_port, run_server, token


async def test_allowed_by_role_claim_and_learned_ownership() -> None:
    async with run_server(order_reader_roles=["support"]) as srv:
        async with connected(srv.url, token("agent", ["support"])) as agent, \
                connected(srv.url, token("u1", orders=["o-claim"])) as claimant, \
                connected(srv.url, token("u2")) as owner, \
                connected(srv.url, token("u3")) as stranger:
            assert (await agent.call("subscribe_order_updates", "o-any"))["ok"]
            assert (await claimant.call("subscribe_order_updates", "o-claim"))["ok"]
            refused = await owner.call("subscribe_order_updates", "o-own")
            assert refused == {"ok": False, "event": "subscribe_order_updates",
                               "error": "forbidden", "code": "forbidden",
                               "message": "not allowed to watch order o-own"}
            status, _ = await srv.publish({
                "id": "s1", "type": "ORDER_STATUS_UPDATED", "orderId": "o-own", "userId": "u2",
                "newStatus": "PAID"})
            assert status == 202
            answer = await owner.call("subscribe_order_updates", {"orderId": "o-own"})
            assert answer == {"ok": True, "orderId": "o-own", "status": "PAID"}
            [snapshot] = await owner.wait_for("order_status")
            assert snapshot["orderId"] == "o-own" and snapshot["status"] == "PAID"
            assert (await stranger.call("subscribe_order_updates", "o-own"))["error"] == \
                "forbidden"
            await srv.publish({"id": "s2", "type": "ORDER_STATUS_UPDATED", "orderId": "o-own",
                               "newStatus": "SHIPPED", "previousStatus": "PAID"})
            [update] = await owner.wait_for("order_status_updated")
            assert update["status"] == "SHIPPED"
            # unsubscribe stops delivery
            assert (await owner.call("unsubscribe_order_updates", "o-own"))["ok"]
            await srv.publish({"id": "s3", "type": "ORDER_STATUS_UPDATED", "orderId": "o-own",
                               "newStatus": "DELIVERED"})
            await quiet()
            assert len(owner.named("order_status_updated")) == 1
            assert stranger.named("order_status_updated") == []


async def test_order_subscription_limit_and_invalid_ids() -> None:
    async with run_server(max_order_subscriptions=2) as srv:
        async with connected(srv.url, token("boss", ["admin"])) as admin:
            assert (await admin.call("subscribe_order_updates", "a"))["ok"]
            assert (await admin.call("subscribe_order_updates", 2))["ok"]
            assert (await admin.call("subscribe_order_updates", "a"))["ok"]  # already in
            over = await admin.call("subscribe_order_updates", "c")
            assert over["ok"] is False and over["error"] == "invalid"
            assert "max 2" in over["message"]
            for bad in [None, True, {"orderId": []}, "x" * 500, "has space", {"id": "1"}]:
                answer = await admin.call("subscribe_order_updates", bad)
                assert answer["ok"] is False and answer["error"] == "invalid", (bad, answer)


@dataclass
class Backend:
    """A stand-in for the application's authorization service."""

    allowed: set[tuple[str, str]] = field(default_factory=set)
    calls: int = 0
    delay: float = 0.0
    url: str = ""
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        await asyncio.sleep(self.delay)
        return web.json_response({"allowed": (body["userId"], body["orderId"]) in self.allowed})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    app = web.Application()
    app.router.add_post("/authorize", state.handle)
    state.runner = web.AppRunner(app)
    await state.runner.setup()
    port = free_port()
    await web.TCPSite(state.runner, "127.0.0.1", port).start()
    state.url = f"http://127.0.0.1:{port}/authorize"
    yield state
    await state.runner.cleanup()


async def test_callback_allows_denies_and_caches(backend: Backend) -> None:
    backend.allowed.add(("u1", "o-1"))
    async with run_server(authz_callback_url=backend.url, authz_cache_seconds=30) as srv, \
            connected(srv.url, token("u1")) as client:
        assert (await client.call("subscribe_order_updates", "o-1"))["ok"]
        assert (await client.call("subscribe_order_updates", "o-2"))["error"] == "forbidden"
        calls = backend.calls
        assert (await client.call("unsubscribe_order_updates", "o-1"))["ok"]
        assert (await client.call("subscribe_order_updates", "o-1"))["ok"]
        assert (await client.call("subscribe_order_updates", "o-2"))["error"] == "forbidden"
        assert backend.calls == calls == 2  # answers are cached


async def test_dead_callback_is_unavailable_fast_then_breaker_opens(backend: Backend) -> None:
    backend.delay = 5.0  # hangs far longer than the timeout
    settings = dict(authz_callback_url=backend.url, authz_timeout=0.3,
                    authz_breaker_failures=3, authz_breaker_reset_seconds=1.0,
                    authz_cache_seconds=0)
    async with run_server(**settings) as srv, connected(srv.url, token("u1")) as client:
        for n in range(3):
            started = time.monotonic()
            answer = await client.call("subscribe_order_updates", f"h-{n}")
            assert answer["ok"] is False and answer["error"] == "unavailable"
            assert time.monotonic() - started < 0.3 + 0.5
        assert backend.calls == 3
        started = time.monotonic()
        answer = await client.call("subscribe_order_updates", "h-open")
        assert answer["error"] == "unavailable" and time.monotonic() - started < 0.2
        assert backend.calls == 3  # the open breaker answered without calling
        # after the reset period one trial goes through; success closes the breaker
        backend.delay = 0.0
        backend.allowed.add(("u1", "h-ok"))
        await asyncio.sleep(1.1)
        assert (await client.call("subscribe_order_updates", "h-ok"))["ok"]
        assert (await client.call("subscribe_order_updates", "h-no"))["error"] == "forbidden"
        assert backend.calls == 5


async def test_stopped_callback_server_is_unavailable(backend: Backend) -> None:
    assert backend.runner is not None
    await backend.runner.cleanup()  # nothing listens any more
    async with run_server(authz_callback_url=backend.url, authz_timeout=0.5) as srv, \
            connected(srv.url, token("u1")) as client:
        started = time.monotonic()
        answer = await client.call("subscribe_order_updates", "o-9")
        assert answer["error"] == "unavailable"
        assert answer["message"] == "authorization service unavailable"
        assert time.monotonic() - started < 1.0
