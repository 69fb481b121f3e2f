"""Recovery with the in-memory bus: resume by position, gap detection, ordering."""

from __future__ import annotations

from typing import Any

from support.clients import connected, quiet
from support.server import Running, run_server, token


def push(n: int, room: str = "user:r") -> dict[str, Any]:
    return {"id": f"ev-{n}", "type": "PUSH", "event": "tick", "rooms": [room], "data": {"n": n}}


async def publish_range(srv: Running, start: int, stop: int) -> None:
    status, body = await srv.publish([push(n) for n in range(start, stop)])
    assert status == 202, body


def seq(position: str) -> int:
    return int(position.rsplit("-", 1)[1])


async def test_connect_with_position_replays_then_goes_live() -> None:
    async with run_server() as srv:
        async with connected(srv.url, token("r")) as first:
            await publish_range(srv, 0, 5)
            ticks = await first.wait_for("tick", count=5)
            last = ticks[-1]["position"]
        await publish_range(srv, 5, 25)  # missed while away
        async with connected(srv.url, auth={"token": token("r"), "position": last}) as again:
            [recovered] = await again.wait_for("recovered")
            assert recovered == {"recovered": True, "orders": [], "ordersRestored": True}
            await publish_range(srv, 25, 27)
            ticks = await again.wait_for("tick", count=22)
            assert [t["n"] for t in ticks] == list(range(5, 27))
            positions = [seq(t["position"]) for t in ticks]
            assert positions == sorted(positions) and len(set(positions)) == 22
            names = [e for e, _ in again.events]
            assert names.index("recovered") == 20  # replay first, then `recovered`, then live


async def test_resume_event_and_unrecoverable_gaps() -> None:
    async with run_server(history_size=10) as srv:
        async with connected(srv.url, token("r")) as client:
            await publish_range(srv, 0, 3)
            ticks = await client.wait_for("tick", count=3)
            first_position = ticks[0]["position"]
            answer = await client.call("resume", {"position": first_position})
            assert answer == {"ok": True, "recovered": True, "replayed": 2}
            await publish_range(srv, 3, 30)  # more than the history keeps
            await client.wait_for("tick", count=3 + 2 + 27)
            answer = await client.call("resume", {"position": first_position})
            assert answer["recovered"] is False and answer["replayed"] == 0
            for garbage in ["nonsense", "deadbeef-1", "x-99999999"]:
                assert (await client.call("resume", {"position": garbage}))["recovered"] is False
            await client.emit("resume", {"position": "nonsense"})
            assert (await client.wait_for("recovered"))[0] == {"recovered": False}
        async with connected(srv.url, auth={"token": token("r"),
                                            "position": first_position}) as late:
            assert (await late.wait_for("recovered"))[0]["recovered"] is False
            await quiet()
            assert late.named("tick") == []


async def test_acks_snapshots_and_broadcasts_keep_per_socket_order() -> None:
    async with run_server(rate_limit_burst=1000, rate_limit_per_second=1000) as srv, \
            connected(srv.url, token("boss", ["admin"])) as client:
        for n in range(20):
            await client.emit("subscribe_order_updates", f"o-{n}")
            await srv.publish({"id": f"o-ev-{n}", "type": "ORDER_STATUS_UPDATED",
                               "orderId": f"o-{n}", "newStatus": f"S{n}"})
        updates = await client.wait_for("order_status_updated", count=20)
        snapshots = await client.wait_for("order_status", count=20)
        assert [u["orderId"] for u in updates] == [f"o-{n}" for n in range(20)]
        assert [s["orderId"] for s in snapshots] == [f"o-{n}" for n in range(20)]
        order = [(e, d["orderId"]) for e, d in client.events]
        for n in range(20):  # each snapshot precedes the update of its order
            assert order.index(("order_status", f"o-{n}")) < \
                order.index(("order_status_updated", f"o-{n}"))
        positions = [seq(u["position"]) for u in updates]
        assert positions == sorted(positions)
