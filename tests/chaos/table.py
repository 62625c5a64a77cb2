"""Print the chaos suite's rows (the JSON lines ``HTCGRID_CHAOS_REPORT`` collected) as the
Markdown table of docs/reliability.md: ``python tests/chaos/table.py chaos-report.jsonl``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = [
    ("scenario", "scenario"),
    ("backend", "backend"),
    ("tasks", "tasks"),
    ("faults", "faults injected"),
    ("lost", "lost"),
    ("duplicate_results", "duplicate results"),
    ("duplicate_executions", "duplicate executions"),
    ("seconds", "time (s)"),
    ("notes", "notes"),
]


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: (r["scenario"], r["backend"]))
    print("| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        row["notes"] = "; ".join(row["notes"])
        print("| " + " | ".join(str(row[key]) for key, _ in COLUMNS) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
