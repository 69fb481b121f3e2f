"""Server-Sent Events: same rooms and events as Socket.IO, resume, slow clients, CORS."""

from __future__ import annotations

import asyncio

import aiohttp

from realtime.gateways.sse import frame
from support.clients import connected, quiet
from support.raw import flood, flood_target, open_slow_reader
from support.server import publish_to, run_server, token
from support.sse import SSEClient, sse


def push(n: int, room: str = "user:s") -> dict[str, object]:
    return {"id": f"p{n}", "type": "PUSH", "event": "tick", "rooms": [room], "data": {"n": n}}


async def test_sse_and_socketio_get_the_same_events() -> None:
    async with run_server() as srv, \
            sse(srv.url, token("s")) as stream, \
            sse(srv.url, token("other")) as outsider, \
            connected(srv.url, token("s")) as socket_client:
        assert stream.retry and stream.headers["X-Accel-Buffering"] == "no"
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        await srv.publish([push(1), push(2), {
            "id": "u", "type": "USER_UPDATED", "userId": "s", "updates": {"a": 1}}])
        ticks = await stream.wait_for("tick", count=2)
        via_socket = await socket_client.wait_for("tick", count=2)
        assert ticks == via_socket
        assert (await stream.wait_for("user_updated"))[0] == \
            (await socket_client.wait_for("user_updated"))[0]
        assert [f.id for f in stream.frames] == [t["position"] for t in ticks] + \
            [stream.named("user_updated")[0]["position"]]
        await quiet()
        assert outsider.frames == []


async def test_token_by_query_and_cookie_and_refusals() -> None:
    async with run_server() as srv:
        async with sse(srv.url, query=f"?token={token('q')}") as by_query:
            await srv.publish(push(1, "user:q"))
            await by_query.wait_for("tick")
        async with sse(srv.url, headers={"Cookie": f"realtime_token={token('c')}"}) as by_cookie:
            await srv.publish(push(2, "user:c"))
            await by_cookie.wait_for("tick")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{srv.url}/sse") as response:
                assert response.status == 401
            async with session.get(f"{srv.url}/sse?token=bad") as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "invalid_token"
            async with session.get(f"{srv.url}/sse?token={token('x')}&orders=o-1") as response:
                assert response.status == 403
                assert (await response.json())["error"]["code"] == "forbidden"


async def test_orders_query_uses_the_same_authorization() -> None:
    async with run_server() as srv:
        await srv.publish({"id": "own", "type": "ORDER_STATUS_UPDATED", "orderId": "o-5",
                           "userId": "buyer", "newStatus": "PAID"})
        async with sse(srv.url, token("buyer"), query="?orders=o-5") as buyer, \
                sse(srv.url, token("agent", ["support"]), query="?orders=o-5,o-6") as agent:
            await srv.publish({"id": "st", "type": "ORDER_STATUS_UPDATED", "orderId": "o-5",
                               "newStatus": "SHIPPED"})
            assert (await buyer.wait_for("order_status_updated"))[0]["status"] == "SHIPPED"
            assert (await agent.wait_for("order_status_updated"))[0]["eventId"] == "st"


async def test_resume_with_last_event_id() -> None:
    async with run_server() as srv:
        async with sse(srv.url, token("s")) as first:
            await srv.publish(push(0))
            [tick] = await first.wait_for("tick")
        last_id = first.frames[-1].id
        await srv.publish([push(n) for n in range(1, 101)])  # missed while away
        async with sse(srv.url, token("s"), headers={"Last-Event-ID": str(last_id)}) as again:
            await again.wait_for("recovered")
            await srv.publish(push(101))
            ticks = await again.wait_for("tick", count=101)
            assert [t["n"] for t in ticks] == list(range(1, 102))
            names = [f.event for f in again.frames]
            assert names.index("recovered") == 100 and again.named("recovered") == [
                {"recovered": True}]
        assert tick["n"] == 0


async def test_resume_gap_older_than_history_says_not_recovered() -> None:
    async with run_server(history_size=10) as srv:
        async with sse(srv.url, token("s")) as first:
            await srv.publish(push(0))
            await first.wait_for("tick")
        await srv.publish([push(n) for n in range(1, 30)])
        async with sse(srv.url, token("s"),
                       query=f"?lastEventId={first.frames[-1].id}") as again:
            assert (await again.wait_for("recovered"))[0] == {"recovered": False}
            await quiet()
            assert again.named("tick") == []


async def test_heartbeat_and_token_expiry() -> None:
    async with run_server(sse_heartbeat_seconds=0.2, jwt_leeway=0) as srv, \
            sse(srv.url, token("s", ttl=3)) as stream:
        async with asyncio.timeout(2):
            while stream.comments < 1:  # heartbeats flow before the token expires
                await asyncio.sleep(0.05)
        assert not stream.frames
        await stream.wait_for("token_expired", timeout=5)
        async with asyncio.timeout(3):
            await stream.ended.wait()


async def test_cors_allow_list() -> None:
    async with run_server(cors_origins=["https://app.example"]) as srv:
        async with sse(srv.url, token("s"), headers={"Origin": "https://app.example"}) as ok:
            assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert ok.headers["Access-Control-Allow-Credentials"] == "true"
        async with sse(srv.url, token("s"), headers={"Origin": "https://evil.example"}) as no:
            assert "Access-Control-Allow-Origin" not in no.headers


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def test_slow_client_is_cut_off_and_memory_stays_bounded() -> None:
    server = await flood_target("REALTIME_SSE_BUFFER_BYTES")
    assert server.proc is not None
    try:
        async with sse(server.url, token("s")) as healthy:
            slow = await open_slow_reader(server.url, (
                "GET /sse HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token('s')}\r\n\r\n").encode())
            before = rss_mb(server.proc.pid)
            # 24 MB through a 1 MB buffer; the test client keeps no frames (counted below)
            await flood(server.url, "user:s", after_batch=healthy.frames.clear)
            async with aiohttp.ClientSession() as session, \
                    session.get(f"{server.url}/metrics") as response:
                metrics = await response.text()
            after = rss_mb(server.proc.pid)
            print(f"\nserver RSS before {before:.1f} MB, after {after:.1f} MB "
                  f"(24 MB pushed to a reader that reads nothing)")
            assert 'realtime_slow_disconnects_total{transport="sse"} 1.0' in metrics
            assert after - before < 30
            await srv_publish_and_check(server.url, healthy)
            slow.close()
    finally:
        server.kill()


async def srv_publish_and_check(url: str, healthy: SSEClient) -> None:
    """The healthy client still receives after the slow one was cut off."""
    await publish_to(url, {"id": "last", "type": "PUSH", "event": "done", "rooms": ["user:s"]})
    assert (await healthy.wait_for("done", timeout=10))[0]["eventId"] == "last"


def test_frame_writer_never_emits_a_raw_line_break_in_event_or_id() -> None:
    data = frame("news\ndata: {}\r\nid: 9\revent: x", b'{"a":1}', "p-1\nretry: 1\r")
    lines = data.split(b"\n")
    assert b"\r" not in data and data.count(b"\n") == 4, data
    assert lines[0].startswith(b"id: ") and lines[1].startswith(b"event: ")
    assert lines[2] == b'data: {"a":1}' and lines[3:] == [b"", b""]


async def test_injected_and_reserved_names_are_refused_before_any_stream_sees_them() -> None:
    async with run_server() as srv, sse(srv.url, token("s")) as stream:
        for name in ["message", "reconnect", "recovered", "tick\ndata: {}\nid: 1-999"]:
            status, body = await srv.publish({"id": f"x-{name}", "type": "PUSH",
                                              "event": name, "rooms": ["user:s"]})
            assert status == 400 and body["error"]["code"] == "invalid_event", (name, body)
        await srv.publish(push(1))
        await stream.wait_for("tick")
        assert [f.event for f in stream.frames] == ["tick"]


CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials")


async def sse_headers(url: str, origin: str | None, bearer: str | None = None,
                      method: str = "GET") -> tuple[int, dict[str, str]]:
    headers = {"Origin": origin} if origin else {}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    if method == "OPTIONS":
        headers.update({"Access-Control-Request-Method": "GET",
                        "Access-Control-Request-Headers": "authorization, last-event-id"})
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{url}/sse", headers=headers,
            timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, dict(response.headers)


async def test_cors_unset_allows_no_credentials_and_reflects_nothing() -> None:
    async with run_server() as srv:
        for origin in ["https://evil.example", "null", None]:
            for bearer in [token("s"), None]:
                status, headers = await sse_headers(srv.url, origin, bearer)
                assert status == (200 if bearer else 401)
                assert "Access-Control-Allow-Credentials" not in headers
                assert headers.get("Access-Control-Allow-Origin") in (None, "*"), headers
            _, preflight = await sse_headers(srv.url, origin, method="OPTIONS")
            assert "Access-Control-Allow-Credentials" not in preflight
            assert preflight.get("Access-Control-Allow-Origin") in (None, "*")


async def test_cors_allow_list_with_vary_on_every_origin_dependent_answer() -> None:
    async with run_server(cors_origins=["https://app.example", "null"]) as srv:
        status, ok = await sse_headers(srv.url, "https://app.example", token("s"))
        assert status == 200 and ok["Access-Control-Allow-Origin"] == "https://app.example"
        assert ok["Access-Control-Allow-Credentials"] == "true"
        assert "Origin" in ok["Vary"]
        # a refusal to a listed origin is readable by that origin, and varies too
        status, refused = await sse_headers(srv.url, "https://app.example")
        assert status == 401 and refused["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Origin" in refused["Vary"]
        for origin in ["https://evil.example", "null", None]:
            for bearer in [token("s"), None]:
                _, headers = await sse_headers(srv.url, origin, bearer)
                assert not any(name in headers for name in CORS_HEADERS), (origin, headers)
                assert "Origin" in headers["Vary"], (origin, headers)
        status, preflight = await sse_headers(srv.url, "https://app.example", method="OPTIONS")
        assert status in (200, 204)
        assert preflight["Access-Control-Allow-Origin"] == "https://app.example"
        assert preflight["Access-Control-Allow-Credentials"] == "true"
        assert "GET" in preflight["Access-Control-Allow-Methods"]
        assert "authorization" in preflight["Access-Control-Allow-Headers"].lower()
        assert "Origin" in preflight["Vary"]
        _, denied = await sse_headers(srv.url, "https://evil.example", method="OPTIONS")
        assert not any(name in denied for name in CORS_HEADERS)
        assert "Origin" in denied["Vary"]


async def test_an_event_as_large_as_the_buffer_is_delivered_not_cut_off() -> None:
    async with run_server(sse_buffer_bytes=64 * 1024) as srv, \
            sse(srv.url, token("s")) as stream:
        big = {**push(1), "data": {"blob": "x" * 100_000}}
        assert (await srv.publish(big))[0] == 202
        assert len((await stream.wait_for("tick"))[0]["blob"]) == 100_000
        await srv.publish(push(2))
        assert [t.get("n") for t in await stream.wait_for("tick", count=2)] == [None, 2]
