"""The floor of a broadcast on this machine: what one small WebSocket frame written to each
of N loopback sockets costs, with no server around it.

    python -m loadtest.bench_send_floor [--sockets 1000] [--rounds 300]

This process (pinned to CPU 0, as the servers are) accepts ``--sockets`` connections from a
reader process (pinned to CPU 1, as the load client is) that only drains them, then writes
one 132-byte frame to every socket per round, alternating two ways of writing: a bare
``os.write`` per socket (nothing cheaper exists in Python: one system call) and uvloop's
``transport.write`` (what the server's outboxes call). It reports user and kernel µs per
write (``getrusage`` of this thread). The kernel figure is what any server pays per
delivery for one send per recipient — compare it with the kernel share that
``loadtest.broadcast --scenario steady`` prints for each server (README "Performance").
Output: a table and ``results/bench_send_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
from collections.abc import Callable

import uvloop

from loadtest.report import Progress, Run, print_table, save

FRAME = b"\x81\x7e\x00\x80" + b"x" * 128  # a text frame with a 128-byte payload
SERVER_CPU, READER_CPU = 0, 1


class Drain(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        return None


async def read_forever(port: int, sockets: int) -> None:
    """The reader process: opens the connections and drains them until killed."""
    loop = asyncio.get_running_loop()
    for _ in range(sockets):
        await loop.create_connection(Drain, "127.0.0.1", port)
    await asyncio.sleep(3600)


async def measure(args: argparse.Namespace) -> list[Run]:
    loop = asyncio.get_running_loop()
    accepted: list[Drain] = []
    everyone = asyncio.Event()

    def accept() -> Drain:
        accepted.append(Drain())
        if len(accepted) == args.sockets:
            everyone.set()
        return accepted[-1]

    server = await loop.create_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = subprocess.Popen(["taskset", "-c", str(READER_CPU), sys.executable, "-m",
                               "loadtest.bench_send_floor", "--read", str(port),
                               "--sockets", str(args.sockets)])
    try:
        await asyncio.wait_for(everyone.wait(), 60)
        await asyncio.sleep(0.5)
        transports = [drain.transport for drain in accepted]
        fds = [t.get_extra_info("socket").fileno() for t in transports]

        def bare() -> None:
            write = os.write
            for fd in fds:
                write(fd, FRAME)

        def through_transport() -> None:
            for transport in transports:
                transport.write(FRAME)  # type: ignore[attr-defined]

        ways: dict[str, Callable[[], None]] = {"os.write": bare,
                                               "transport.write": through_transport}
        spent = {name: [0.0, 0.0] for name in ways}
        progress = Progress("rounds", args.rounds)
        for number in range(args.rounds):
            order = list(ways) if number % 2 == 0 else list(ways)[::-1]
            for name in order:
                before = resource.getrusage(resource.RUSAGE_THREAD)
                ways[name]()
                after = resource.getrusage(resource.RUSAGE_THREAD)
                spent[name][0] += after.ru_utime - before.ru_utime
                spent[name][1] += after.ru_stime - before.ru_stime
                await asyncio.sleep(0.005)  # the reader drains: every write finds room
            progress.update(number + 1)
    finally:
        reader.kill()
        reader.wait()
        server.close()
    writes = args.rounds * args.sockets
    return [Run(name, args.sockets, delivered=writes, cpu_seconds=user + kernel,
                extra={"user µs per write": user / writes * 1e6,
                       "kernel µs per write": kernel / writes * 1e6})
            for name, (user, kernel) in spent.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--read", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        uvloop.run(read_forever(args.read, args.sockets))
        return
    os.sched_setaffinity(0, {SERVER_CPU})
    runs = uvloop.run(measure(args))
    print_table("one frame written to each socket, nothing else", runs)
    save("bench_send_floor", runs, settings={k: v for k, v in vars(args).items() if k != "read"})


if __name__ == "__main__":
    main()
