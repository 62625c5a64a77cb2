"""A one-line progress bar on stderr for long waits (only when stderr is a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.started = time.monotonic()
        self.enabled = self.stream.isatty()

    def line(self, counts: dict[str, int]) -> str:
        done = counts.get("finished", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        filled = int(self.width * done / self.total)
        rate = done / max(time.monotonic() - self.started, 1e-9)
        parts = [
            f"{counts.get(k, 0)} {k}"
            for k in ("pending", "processing", "finished", "failed", "cancelled")
            if counts.get(k)
        ]
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} {rate:,.0f}/s  "
            + ", ".join(parts)
        )

    def show(self, counts: dict[str, int]) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(counts) + "\x1b[K")
            self.stream.flush()

    def finish(self, counts: dict[str, int]) -> None:
        if self.enabled:
            self.stream.write("\r" + self.line(counts) + "\x1b[K\n")
            self.stream.flush()
