"""Benchmark output shared by every script: progress on long runs, a table on stdout,
``results/<name>.json`` for machines and a PNG where a distribution exists."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from loadtest.lean_client import LeanClient, percentile

RESULTS = Path(__file__).resolve().parent / "results"
LATENCY_AXIS = "latency, publish → client (ms, log scale)"


@dataclass
class Run:
    """What one server (or one phase) did in one scenario, from the load client and /proc."""

    server: str
    clients: int
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    connect_p50_ms: float = math.nan
    latency_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def cpu_us_per_delivery(self) -> float:
        if not (self.delivered and self.cpu_seconds):  # nothing delivered, or not measured
            return math.nan
        return self.cpu_seconds / self.delivered * 1e6

    @property
    def deliveries_per_second(self) -> float:
        """Over the whole measured window (``seconds``), not a sample of it."""
        return self.delivered / self.seconds if self.delivered and self.seconds else math.nan

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies"]
        return {**data, "cpu_us_per_delivery": self.cpu_us_per_delivery,
                "deliveries_per_second": self.deliveries_per_second}


def spread(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds of ``values`` in seconds (empty when there are none)."""
    if not values:
        return {}
    summary = {f"p{p}": percentile(values, p) * 1000 for p in (50, 95, 99)}
    summary["max"] = max(values) * 1000
    return summary


def tally(run: Run, clients: list[LeanClient], expected: list[set[str]]) -> Run:
    """Fill delivery counts and latency percentiles from the clients' records."""
    for client, wanted in zip(clients, expected, strict=True):
        got = client.event_ids
        run.delivered += len(got)
        run.duplicates += len(got) - len(set(got))
        run.missing += len(wanted - set(got))
        run.latencies += client.latencies
    if clients:
        run.connect_p50_ms = percentile([c.connect_seconds for c in clients], 50) * 1000
    run.latency_ms = spread(run.latencies)
    return run


def ratio(ours: float, reference: float) -> float:
    return ours / reference if reference and not math.isnan(reference) else math.nan


def _cells(run: Run) -> dict[str, str]:
    """Only the rows that apply to this run (an idle run has no deliveries: no NaN rows)."""
    cells: dict[str, str] = {}
    if run.clients:
        cells["clients"] = f"{run.clients:,}"
    if run.delivered or run.missing:
        cells["delivered"] = f"{run.delivered:,}"
        cells["missing / duplicate"] = f"{run.missing} / {run.duplicates}"
    if run.seconds:
        cells["seconds"] = f"{run.seconds:.2f}"
    if run.cpu_seconds:
        cells["server CPU s"] = f"{run.cpu_seconds:.2f}"
    numbers = {"CPU µs per delivery": (run.cpu_us_per_delivery, 2),
               "deliveries/s": (run.deliveries_per_second, 0),
               "connect p50 ms": (run.connect_p50_ms, 1)}
    numbers.update({f"latency {k} ms": (v, 1) for k, v in run.latency_ms.items()})
    numbers.update({k: (v, 0 if isinstance(v, int) else 2) for k, v in run.extra.items()})
    for label, (value, digits) in numbers.items():
        if not math.isnan(value):
            cells[label] = f"{value:,.{digits}f}"
    return cells


def print_table(title: str, runs: list[Run], target: str = "") -> None:
    columns = [_cells(r) for r in runs]
    width = max(16, *(len(r.server) + 2 for r in runs))
    label_width = max(24, *(len(k) + 2 for cells in columns for k in cells))
    print(f"\n{title}" + (f"   (target: {target})" if target else ""))
    print(f"  {'':{label_width}}" + "".join(f"{r.server:>{width}}" for r in runs))
    for label in dict.fromkeys(k for cells in columns for k in cells):
        print(f"  {label:{label_width}}"
              + "".join(f"{cells.get(label, '-'):>{width}}" for cells in columns))
    for reference, ratios in ratios_to_references(runs).items():
        label = "ratio CPU/delivery" + ("" if reference == "reference" else f" to {reference}")
        print(f"  {label:{label_width}}" + "".join(
            f"{ratios[r.server]:>{width}.3f}" if r.server in ratios else f"{'':>{width}}"
            for r in runs))


#: Names of the reference servers (``loadtest/reference/``, one per engine).
REFERENCES = ("reference", "eiows", "uws")


def ratios_to_reference(runs: list[Run], reference: str = "reference") -> dict[str, float]:
    """CPU per delivery of each other run divided by ``reference``'s, in the same run."""
    base = next((r for r in runs if r.server == reference), None)
    if base is None or len(runs) < 2:
        return {}
    ratios = {r.server: ratio(r.cpu_us_per_delivery, base.cpu_us_per_delivery)
              for r in runs if r.server not in REFERENCES}
    return {server: value for server, value in ratios.items() if not math.isnan(value)}


def ratios_to_references(runs: list[Run]) -> dict[str, dict[str, float]]:
    """:func:`ratios_to_reference` for every reference server present in ``runs``."""
    found = {name: ratios_to_reference(runs, name) for name in REFERENCES}
    return {name: ratios for name, ratios in found.items() if ratios}


def print_rounds(title: str, rounds: list[list[Run]]) -> None:
    """Each round's ratios to each reference, and their median (what a target is judged
    on: one run on this machine moves by tens of percent)."""
    by_pair: dict[tuple[str, str], list[float]] = {}
    for runs in rounds:
        for reference, ratios in ratios_to_references(runs).items():
            for server, value in ratios.items():
                by_pair.setdefault((server, reference), []).append(value)
    print(f"\n{title}: {len(rounds)} rounds")
    for (server, reference), values in by_pair.items():
        listed = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {server} / {reference}: median {statistics.median(values):.3f}  ({listed})")


def save(name: str, runs: list[Run], *, axis: str = LATENCY_AXIS,
         settings: dict[str, Any] | None = None,
         rounds: list[dict[str, dict[str, float]]] | None = None) -> Path:
    """Write ``results/<name>.json``, and ``<name>.png`` when a run has a distribution
    (``Run.latencies``, in seconds, plotted on ``axis``). Prints where they went.
    ``rounds``: the ratios of every round, when the servers ran more than once."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    body: dict[str, Any] = {"scenario": name, "settings": settings or {},
                            "runs": [r.summary() for r in runs],
                            "ratio_cpu_per_delivery": ratios_to_reference(runs),
                            "ratios_cpu_per_delivery": ratios_to_references(runs)}
    if rounds:
        body["rounds"] = rounds
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    written = [path]
    if any(r.latencies for r in runs):
        written.append(plot_distribution(name, runs, axis, RESULTS / f"{name}.png"))
    print("  → " + ", ".join(str(p) for p in written), flush=True)
    return path


def plot_distribution(name: str, runs: list[Run], axis: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        if run.latencies:
            values = sorted(v * 1000 for v in run.latencies)
            p99 = percentile(run.latencies, 99) * 1000
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))],
                    label=f"{run.server} (p99 {p99:.1f} ms)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(  # 2 and 5 of each decade, plain numbers
        lambda v, _: f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set_xlabel(axis)
    ax.set_ylabel("fraction")
    ax.set_title(f"{name}: distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class Progress:
    """``label: done/total`` every few seconds, so a long run shows it is alive.

    Silent on short runs (nothing before the first interval has passed).
    """

    def __init__(self, label: str, total: int, every: float = 2.0) -> None:
        self.label, self.total, self.every = label, total, every
        self._next = time.monotonic() + every

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            share = f" ({done / self.total:.0%})" if self.total else ""
            print(f"    {self.label}: {done:,}/{self.total:,}{share}", flush=True)


async def wait_for(count: Callable[[], int], total: int, timeout: float, label: str,
                   interval: float = 0.005) -> int:
    """Poll ``count()`` until it reaches ``total`` or ``timeout`` passes; show progress."""
    progress = Progress(label, total)
    deadline = time.monotonic() + timeout
    while (done := count()) < total and time.monotonic() < deadline:
        progress.update(done)
        await asyncio.sleep(interval)
    return done


FULL_GC = 'realtime_gc_longest_pause_seconds{generation="2"}'
FULL_GC_ALL = 'realtime_gc_pause_seconds_count{generation="2"}'
FULL_GC_SHORT = 'realtime_gc_pause_seconds_bucket{generation="2",le="0.05"}'


@dataclass
class FullGc:
    """realtime's full-GC record (``/metrics``): the longest pause since start (ms) and how
    many full collections took over 50 ms; NaN for a server without it (the references)."""

    longest_ms: float = math.nan
    over_50ms: float = math.nan

    def since(self, earlier: FullGc) -> float:
        """Full collections over 50 ms between ``earlier`` and this one."""
        return self.over_50ms - earlier.over_50ms


async def full_gc(session: aiohttp.ClientSession, url: str, name: str) -> FullGc:
    """The record of server ``name`` (nothing asked of the references: Node's ``ws`` engine
    never answers a path it does not serve)."""
    if not name.startswith("realtime"):
        return FullGc()
    try:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text() if response.status == 200 else ""
    except aiohttp.ClientError:
        return FullGc()
    samples = dict(line.rpartition(" ")[::2] for line in text.splitlines()
                   if line.startswith("realtime_gc_"))
    if FULL_GC not in samples:
        return FullGc()
    return FullGc(float(samples[FULL_GC]) * 1000,
                  float(samples[FULL_GC_ALL]) - float(samples[FULL_GC_SHORT]))
