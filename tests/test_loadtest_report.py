"""The load-test report helper: no NaN rows, JSON always, a PNG only for distributions."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from loadtest import report
from loadtest.report import Progress, Run, print_rounds, print_table, ratios_to_references, save


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    return tmp_path


def test_an_idle_run_has_no_nan_row_and_writes_json_without_png(
        results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [Run("realtime", 60, connect_p50_ms=2.5, extra={"RSS KB per connection": 11.2}),
            Run("reference", 60, connect_p50_ms=3.0, extra={"RSS KB per connection": 15.8})]
    print_table("idle", runs)
    save("idle", runs, settings={"idle_clients": 60})
    out = capsys.readouterr().out.split("→")[0]  # the table, not the paths written
    assert "nan" not in out.lower() and "RSS KB per connection" in out
    assert "delivered" not in out and "ratio" not in out
    body = orjson.loads((results / "idle.json").read_bytes())
    assert body["settings"] == {"idle_clients": 60} and len(body["runs"]) == 2
    assert not (results / "idle.png").exists()


def test_a_run_with_latencies_gets_a_png_and_rates_over_the_whole_run(results: Path) -> None:
    run = Run("realtime", 2, delivered=300, seconds=1.5, cpu_seconds=0.003,
              latencies=[0.001 * n for n in range(1, 301)])
    reference = Run("reference", 2, delivered=300, seconds=1.5, cpu_seconds=0.006)
    save("burst", [run, reference])
    body = orjson.loads((results / "burst.json").read_bytes())
    assert body["runs"][0]["deliveries_per_second"] == 200.0
    assert body["runs"][0]["cpu_us_per_delivery"] == pytest.approx(10.0)
    assert body["ratio_cpu_per_delivery"] == {"realtime": pytest.approx(0.5)}
    assert (results / "burst.png").read_bytes().startswith(b"\x89PNG")


def test_progress_is_silent_on_short_runs_and_speaks_on_long_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    Progress("sent", 10).update(5)
    assert capsys.readouterr().out == ""
    Progress("sent", 10, every=0).update(5)
    assert capsys.readouterr().out == "    sent: 5/10 (50%)\n"


def test_rounds_print_each_ratio_and_its_median_and_are_saved(
        results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def round_of(ours: float) -> list[Run]:
        return [Run("realtime", 2, delivered=100, cpu_seconds=ours * 1e-4),
                Run("uws", 2, delivered=100, cpu_seconds=1e-4)]

    rounds = [round_of(ours) for ours in (1.3, 0.9, 1.0)]
    print_rounds("rooms", rounds)
    out = capsys.readouterr().out
    assert "rooms: 3 rounds" in out
    assert "realtime / uws: median 1.000  (1.300, 0.900, 1.000)" in out
    save("rooms", rounds[-1], rounds=[ratios_to_references(runs) for runs in rounds])
    body = orjson.loads((results / "rooms.json").read_bytes())
    assert [r["uws"]["realtime"] for r in body["rounds"]] == pytest.approx([1.3, 0.9, 1.0])
