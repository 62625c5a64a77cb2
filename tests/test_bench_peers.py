"""The peer-comparison harness (benchmarks/peers): its JSON lines' shape, its arithmetic and the
table it prints. Figures are never asserted: they belong to benchmarks/README.md."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from peers import report  # noqa: E402
from peers.base import Missing, need  # noqa: E402
from peers.workloads import WORKLOADS, long_tailed_ms, lpt_makespan, percentile  # noqa: E402

SPREAD = {"median", "min", "max"}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_run_of_htcgrid_and_the_process_pool_writes_one_row_per_figure(
    tmp_path: Path,
) -> None:
    out = tmp_path / "peers.jsonl"
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS)}
    cmd = [sys.executable, "-m", "peers", "--quick", "--repeat", "1", "--json", str(out),
           "--systems", "htcgrid-sqlite,ppe", "--timeout-seconds", "120"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=380)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        assert row["status"] == "ok", row
        assert {"system", "workload", "workers", "startup_seconds", "date", "load_average"} <= set(
            row
        )
        assert row["repeat"] == 1
        for figure in row["figures"].values():
            assert set(figure) == SPREAD
            assert figure["min"] <= figure["median"] <= figure["max"]
    expected = [(w.key, size) for w in WORKLOADS for size in (w.quick.get("sizes") or [None])]
    for system in ("htcgrid-sqlite", "ppe"):
        got = [(r["workload"], r.get("size")) for r in rows if r["system"] == system]
        assert sorted(got, key=str) == sorted(expected, key=str)
    w1 = next(r for r in rows if r["system"] == "htcgrid-sqlite" and r["workload"] == "W1")
    assert w1["figures"]["cpu_ms_per_task"]["median"] > 0  # the server, agent and workers counted
    assert "| W1 no-op tasks/s |" in done.stdout


def test_lpt_schedule_is_never_below_the_lower_bound() -> None:
    lengths = long_tailed_ms(2000)
    assert sum(1 for x in lengths if x >= 1000) == 20
    assert all(1 <= x <= 10 or 1000 <= x <= 3000 for x in lengths)
    for workers in (1, 2, 4, 16):
        bound = max(sum(lengths) / workers, max(lengths))
        assert bound <= lpt_makespan(lengths, workers) <= bound * 4 / 3 + 1e-9
    assert lpt_makespan([3, 3, 2, 2, 2], 2) == 7  # LPT: {3,2,2} and {3,2}


def test_percentile_picks_a_measured_value() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0


def _row(system: str, value: float) -> dict[str, object]:
    figures = {"tasks_per_second": report.spread([value, value * 2, value / 2])}
    return {"system": system, "workload": "W1", "status": "ok", "figures": figures, "workers": 2}


def test_table_gives_ratios_to_the_best_peer_in_both_directions() -> None:
    rows = [
        _row("htcgrid-sqlite", 300.0),
        _row("ray", 100.0),
        _row("dask", 50.0),
        _row("ppe", 900.0),
    ]
    rows.append({"system": "rq", "status": "skipped", "note": "not installed"})
    text = report.table(rows)
    line = next(x for x in text.splitlines() if x.startswith("| W1 no-op"))
    assert "300 [150-600] **3.00x**" in line  # against ray, the best peer (ppe is not one)
    assert "50.0 [25.0-100] **0.50x**" in line
    assert "rq" not in text.splitlines()[0]
    assert report.HEADLINES[1][3] is False  # CPU per task: lower is better, ratio best/value
    assert math.isclose(report.spread([1.0, 3.0, 2.0])["median"], 2.0)


def test_a_peer_that_is_not_installed_is_missing() -> None:
    with pytest.raises(Missing, match="not installed: no_such_peer_module"):
        need("no_such_peer_module")
