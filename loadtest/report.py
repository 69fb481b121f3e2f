"""Benchmark output: a table on stdout, JSON for machines, a PNG of latency distributions."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from loadtest.lean_client import LeanClient, percentile

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Run:
    """What one server did in one scenario, from the load client's and /proc's view."""

    server: str
    clients: int
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    connect_p50_ms: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def cpu_us_per_delivery(self) -> float:
        return self.cpu_seconds / self.delivered * 1e6 if self.delivered else math.nan

    @property
    def deliveries_per_second(self) -> float:
        return self.delivered / self.seconds if self.seconds else math.nan

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies"]
        return {**data, "cpu_us_per_delivery": self.cpu_us_per_delivery,
                "deliveries_per_second": self.deliveries_per_second}


def tally(run: Run, clients: list[LeanClient], expected: list[set[str]]) -> Run:
    """Fill delivery counts and latency percentiles from the clients' records."""
    for client, wanted in zip(clients, expected, strict=True):
        got = client.event_ids
        run.delivered += len(got)
        run.duplicates += len(got) - len(set(got))
        run.missing += len(wanted - set(got))
        run.latencies += client.latencies
    run.connect_p50_ms = percentile([c.connect_seconds for c in clients], 50) * 1000
    if run.latencies:
        run.latency_ms = {f"p{p}": percentile(run.latencies, p) * 1000 for p in (50, 95, 99)}
        run.latency_ms["max"] = max(run.latencies) * 1000
    return run


def ratio(ours: float, reference: float) -> float:
    return ours / reference if reference and not math.isnan(reference) else math.nan


def _cells(run: Run) -> dict[str, str]:
    cells = {
        "clients": f"{run.clients:,}",
        "delivered": f"{run.delivered:,}",
        "missing / duplicate": f"{run.missing} / {run.duplicates}",
        "server CPU s": f"{run.cpu_seconds:.2f}",
        "CPU µs per delivery": f"{run.cpu_us_per_delivery:.2f}",
        "deliveries/s": f"{run.deliveries_per_second:,.0f}",
        "connect p50 ms": f"{run.connect_p50_ms:.1f}",
    }
    cells.update({f"latency {k} ms": f"{v:.1f}" for k, v in run.latency_ms.items()})
    cells.update({k: f"{v:,.2f}" for k, v in run.extra.items()})
    return cells


def print_table(title: str, runs: list[Run], target: str = "") -> None:
    columns = [_cells(r) for r in runs]
    print(f"\n{title}" + (f"   (target: {target})" if target else ""))
    print(f"  {'':24}" + "".join(f"{r.server:>16}" for r in runs))
    for label in dict.fromkeys(k for cells in columns for k in cells):
        print(f"  {label:24}" + "".join(f"{cells.get(label, '-'):>16}" for cells in columns))
    ratios = ratios_to_reference(runs)
    if ratios:
        print(f"  {'ratio CPU/delivery':24}" + "".join(
            f"{ratios[r.server]:>16.3f}" if r.server in ratios else f"{'':>16}" for r in runs))


def ratios_to_reference(runs: list[Run]) -> dict[str, float]:
    """CPU per delivery of each run divided by the reference's (the last run) in the same run."""
    if len(runs) < 2 or runs[-1].server != "reference":
        return {}
    return {r.server: ratio(r.cpu_us_per_delivery, runs[-1].cpu_us_per_delivery)
            for r in runs[:-1]}


def save(name: str, runs: list[Run], plot: bool = True) -> Path:
    """Write ``results/<name>.json`` (and ``<name>.png`` when there are latencies)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    body: dict[str, Any] = {"scenario": name, "runs": [r.summary() for r in runs]}
    body["ratio_cpu_per_delivery"] = ratios_to_reference(runs)
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if plot and any(r.latencies for r in runs):
        plot_latencies(name, runs, RESULTS / f"{name}.png")
    return path


def plot_latencies(name: str, runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in runs:
        if run.latencies:
            values = sorted(v * 1000 for v in run.latencies)
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))],
                    label=f"{run.server} (p99 {run.latency_ms['p99']:.1f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("latency, publish → client (ms, log scale)")
    ax.set_ylabel("fraction of deliveries")
    ax.set_title(f"{name}: latency distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
