"""Server-side figures from /proc: CPU seconds and RSS of one process."""

from __future__ import annotations

import contextlib
import os


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (Node's GC and I/O threads included).

    ``/proc/<pid>/task/*/schedstat`` counts nanoseconds; ``/proc/<pid>/stat`` only clock
    ticks (10 ms), too coarse for a burst that costs a few of them.
    """
    total_ns = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), \
                    open(f"/proc/{pid}/task/{task}/schedstat") as handle:  # may have ended
                total_ns += int(handle.read().split()[0])
    except FileNotFoundError:
        return _cpu_ticks(pid)
    return total_ns / 1e9


def kernel_seconds(pid: int) -> float:
    """System (kernel) CPU time of every thread of ``pid``, in clock ticks (10 ms): the
    part of :func:`cpu_seconds` spent in system calls (a send's TCP work on loopback
    included), the same for any server that writes the same frames."""
    ticks = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), \
                open(f"/proc/{pid}/task/{task}/stat") as handle:
            ticks += int(handle.read().rsplit(")", 1)[1].split()[12])  # stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pin_threads(pid: int, cpu: int) -> None:
    """Pin every thread ``pid`` has now to ``cpu`` (``sched_setaffinity`` on a pid moves only
    its main thread; a runtime such as Tokio starts its workers before we can pin it)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), {cpu})
