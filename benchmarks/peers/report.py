"""Rows as JSON lines, and the markdown table of each figure against the best peer."""

from __future__ import annotations

import json
import math
import statistics
from typing import Any, TextIO

# (workload, figure, label, higher is better)
HEADLINES = [
    ("W1", "tasks_per_second", "W1 no-op tasks/s", True),
    ("W1", "cpu_ms_per_task", "W1 CPU of the whole stack per task, ms", False),
    ("W2", "efficiency", "W2 5 ms CPU tasks, efficiency", True),
    ("W3", "efficiency", "W3 50 ms sleeps on 16 workers, efficiency", True),
    ("W4", "mb_per_second", "W4 100 KiB in/out, MB/s", True),
    ("W5", "p50_ms", "W5 round trip p50, ms", False),
    ("W5", "p99_ms", "W5 round trip p99, ms", False),
    ("W5", "cpu_ms_per_round_trip", "W5 CPU per round trip, ms", False),
    ("W6", "us_per_task", "W6 {size:,} no-op tasks, µs per task", False),
    ("W6", "rss_peak_mb", "W6 {size:,} tasks, peak RSS of servers, agents, workers, MB", False),
    ("W7", "efficiency", "W7 long-tailed, efficiency vs LPT", True),
    ("W8", "round_trip_p50_ms", "W8 20 clients, round trip p50, ms", False),
    ("W8", "round_trip_p99_ms", "W8 20 clients, round trip p99, ms", False),
    ("W8", "session_p99_ms", "W8 20 clients, 10-task session p99, ms", False),
    ("W8", "errors", "W8 errors", False),
]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(reps: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: spread([r[key] for r in reps]) for key in reps[0]}


def write_row(out: TextIO, row: dict[str, Any]) -> None:
    out.write(json.dumps(row, sort_keys=True) + "\n")
    out.flush()


def is_peer(system: str) -> bool:
    """The best peer is picked among the durable-or-distributed peers: not htcgrid, not the pool."""
    return not system.startswith("htcgrid") and system != "ppe"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """Median [min-max] and the ratio to the best peer's median (> 1 is better, either way)."""
    rows = [r for r in rows if r.get("workload")]  # not the lines of a system that was skipped
    systems = list(dict.fromkeys(r["system"] for r in rows))
    found = {(r["system"], r["workload"], r.get("size")): r for r in rows}
    sizes = sorted({r["size"] for r in rows if r["workload"] == "W6" and r.get("size")})
    lines = ["| figure | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for workload, key, label, higher in HEADLINES:
        for size in sizes if workload == "W6" else [None]:
            cells = {}
            for system in systems:
                row = found.get((system, workload, size))
                if row and row["status"] == "ok" and key in row["figures"]:
                    cells[system] = row["figures"][key]
            if not cells:
                continue
            peers = [c["median"] for s, c in cells.items() if is_peer(s)]
            best = (max if higher else min)(peers) if peers else None
            out = []
            for system in systems:
                out.append(_cell(cells.get(system), best, higher))
            lines.append(f"| {label.format(size=size or 0)} | " + " | ".join(out) + " |")
    starts = {
        (r["system"], r["workers"]): r["startup_seconds"] for r in rows if "startup_seconds" in r
    }
    for workers in sorted({w for _, w in starts}):
        cells_s = [starts.get((s, workers)) for s in systems]
        text = [f"{c:.1f}" if c is not None else "" for c in cells_s]
        lines.append(
            f"| start-up to a first result, {workers} workers, s | " + " | ".join(text) + " |"
        )
    return "\n".join(lines)


def _cell(cell: dict[str, float] | None, best: float | None, higher: bool) -> str:
    if cell is None:
        return "-"
    text = f"{_fmt(cell['median'])} [{_fmt(cell['min'])}-{_fmt(cell['max'])}]"
    median = cell["median"]
    if best and median and not math.isnan(median):
        ratio = median / best if higher else best / median
        text += f" **{ratio:.2f}x**"
    return text
