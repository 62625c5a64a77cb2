"""benchmarks/features_bench.py at a tiny size, so it cannot rot: every row of its table and its
JSON lines is there, with figures that make sense. Figures are never asserted beyond that:
they belong to benchmarks/README.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from features_bench import ROWS, fan_in  # noqa: E402

TASKS = 50


def test_fan_in_gives_every_task_past_the_roots_eight_earlier_roots() -> None:
    deps = fan_in(100)
    roots = [i for i, d in enumerate(deps) if d is None]
    assert roots == list(range(len(roots))) and len(roots) >= 8
    for d in deps[len(roots) :]:
        assert d is not None and len(set(d)) == 8 and all(0 <= i < len(roots) for i in d)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_tiny_run_prints_and_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "features.jsonl"
    cmd = [sys.executable, str(BENCHMARKS / "features_bench.py"), "--tasks", str(TASKS),
           "--repeat", "1", "--json", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["row"] for line in lines] == ROWS
    table = [row for row in done.stdout.splitlines() if row.startswith("| ")]
    assert len(table) == 1 + len(ROWS), done.stdout
    for line, printed in zip(lines, table[1:], strict=True):
        assert printed.startswith(f"| {line['row']}")
        assert line["tasks"] == TASKS and line["repeat"] == 1 and line["backend"] == "sqlite"
        spreads = [line[k] for k in ("tasks_per_second", "wall_ms_per_task", "cpu_ms_per_task")]
        for s in spreads:
            assert 0 <= s["min"] <= s["median"] <= s["max"] < float("inf"), line
        rate, wall = spreads[0]["median"], spreads[1]["median"]
        assert rate > 0 and abs(rate * wall / 1e3 - 1) < 1e-6, line  # one figure, two units
    share = next(line["share"] for line in lines if line["row"] == "fair share")
    assert abs(share["alice"]["median"] + share["bob"]["median"] - 1) < 1e-9, share
