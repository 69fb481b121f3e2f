"""Connection-level auth: the compatibility `authenticate` flow, expiry and refresh."""

from __future__ import annotations

import asyncio

from support.clients import connected, quiet
from support.server import run_server, token


async def test_authenticate_after_connecting() -> None:
    async with run_server() as srv, connected(srv.url, auth={}) as client:
        early = await client.call("subscribe_order_updates", "o1")
        assert early["ok"] is False and early["error"] == "unauthenticated"
        answer = await client.call("authenticate", {"token": token("late", ["admin"])})
        assert answer == {"ok": True, "userId": "late"}
        assert (await client.wait_for("authenticated"))[0] == {"userId": "late"}
        await srv.publish({"id": "a1", "type": "PUSH", "event": "hi", "rooms": ["role:admin"]})
        assert (await client.wait_for("hi"))[0]["eventId"] == "a1"


async def test_authenticate_with_plain_string_and_bad_token() -> None:
    async with run_server() as srv:
        async with connected(srv.url, auth={}) as client:
            await client.emit("authenticate", token("plain"))
            assert (await client.wait_for("authenticated"))[0]["userId"] == "plain"
        async with connected(srv.url, auth={}) as bad:
            await bad.emit("authenticate", "not-a-token")
            [error] = await bad.wait_for("auth_error")
            assert error["message"] and error["code"] == "invalid_token"
            await bad.wait_disconnected()


async def test_unauthenticated_socket_is_dropped_after_timeout() -> None:
    async with run_server(auth_timeout=0.5) as srv, connected(srv.url, auth={}) as client:
        await client.wait_disconnected(timeout=3)
        assert client.named("auth_error")[0]["message"] == "authentication timed out"


async def test_expiry_disconnects_with_token_expired() -> None:
    async with run_server(jwt_leeway=0) as srv, connected(srv.url, token("brief", ttl=2)) as c:
        [expired] = await c.wait_for("token_expired", timeout=5)
        assert expired["message"]
        await c.wait_disconnected()


async def test_refresh_keeps_the_connection() -> None:
    async with run_server(jwt_leeway=0) as srv, \
            connected(srv.url, token("keeper", ttl=2)) as client:
        assert (await client.call("refresh_token", {"token": "junk"}))["error"] == \
            "invalid_token"
        assert (await client.call("refresh_token", token("someone-else")))["error"] == \
            "forbidden"
        answer = await client.call("refresh_token", {"token": token("keeper", ["admin"],
                                                                     ttl=60)})
        assert answer["ok"] is True and answer["expiresAt"].endswith("Z")
        await asyncio.sleep(2.5)
        assert client.client.connected and client.named("token_expired") == []
        # the refreshed roles apply: the admin room is joined
        await srv.publish({"id": "r1", "type": "PUSH", "event": "x", "rooms": ["role:admin"]})
        assert (await client.wait_for("x"))[0]["eventId"] == "r1"


async def test_refused_refresh_keeps_the_old_expiry() -> None:
    async with run_server(jwt_leeway=0) as srv, connected(srv.url, token("u", ttl=2)) as client:
        await client.call("refresh_token", token("intruder", ttl=600))
        await client.wait_for("token_expired", timeout=5)
        await client.wait_disconnected()
        await quiet(0.1)


async def test_a_refresh_with_fewer_rights_leaves_the_order_rooms_it_no_longer_allows() -> None:
    """`support` may watch any order; after a refresh without that role, `o-7` is left."""
    async with run_server() as srv, connected(srv.url, token("agent", ["support"])) as client:
        assert (await client.call("subscribe_order_updates", "o-7"))["ok"] is True
        answer = await client.call("refresh_token", token("agent", []))
        assert answer["ok"] is True and answer["leftOrders"] == ["o-7"]
        await srv.publish({"id": "after", "type": "ORDER_STATUS_UPDATED", "orderId": "o-7",
                           "newStatus": "shipped"})
        await srv.publish({"id": "mine", "type": "PUSH", "event": "x", "rooms": ["user:agent"]})
        await client.wait_for("x")
        assert client.named("order_status_updated") == []
