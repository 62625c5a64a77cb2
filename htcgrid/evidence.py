"""Poison-task evidence: what each attempt that killed its worker left behind.

A task's evidence is a small JSON list stored with it (``TaskRecord.evidence``), one entry
per attempt that killed its worker: the attempt, the kind of death, the exit code or signal,
the worker's peak RSS while it ran the task, the tail of its log when the agent could read
it, and the agent (id and host) it ran on. The agent that saw the death builds the whole new
list (the stored one plus its entry) and records it with the attempt's outcome: only the
lease holder writes it, so no backend needs an append of its own.
"""

from __future__ import annotations

import json
from typing import Any

KEEP_ENTRIES = 10  # the last deaths kept per task
LOG_TAIL_BYTES = 4096  # the most of a log kept per entry


def tail(text: str, limit: int = LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of ``text`` (cut on a character boundary)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[-limit:].decode(errors="ignore")


def entry(
    attempt: int,
    kind: str,
    reason: str,
    *,
    exit_code: int | None,
    peak_rss_mb: int,
    agent: str,
    host: str,
    log: str = "",
) -> dict[str, Any]:
    """One attempt's death; a negative ``exit_code`` is a signal, as ``multiprocessing`` has it."""
    signal_name: str | None = None
    if exit_code is not None and exit_code < 0:
        import signal

        try:
            signal_name = signal.Signals(-exit_code).name
        except ValueError:
            signal_name = str(-exit_code)
    return {
        "attempt": attempt,
        "kind": kind,
        "reason": reason,
        "exit_code": exit_code if signal_name is None else None,
        "signal": signal_name,
        "peak_rss_mb": peak_rss_mb,
        "agent": agent,
        "host": host,
        "log_tail": tail(log),
    }


def load(text: str | None) -> list[dict[str, Any]]:
    """The stored list; an empty or unreadable one is no evidence."""
    if not text:
        return []
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def append(stored: str | None, new: dict[str, Any]) -> str:
    """The stored list with ``new`` added (an entry for the same attempt is replaced), kept
    to the last ``KEEP_ENTRIES``, as JSON text."""
    kept = [e for e in load(stored) if e.get("attempt") != new.get("attempt")]
    kept.append(new)
    return json.dumps(kept[-KEEP_ENTRIES:], separators=(",", ":"))


def describe(text: str | None) -> str:
    """One line per death, for a PoisonTask message."""
    return describe_entries(load(text))


def describe_entries(entries: list[dict[str, Any]]) -> str:
    """``describe`` for a list already read (a task's ``evidence`` as the API shows it)."""
    lines = []
    for e in entries:
        how = f"signal {e['signal']}" if e.get("signal") else f"exit code {e.get('exit_code')}"
        lines.append(
            f"attempt {e.get('attempt')}: {e.get('kind')}, {how}, "
            f"peak RSS {e.get('peak_rss_mb')} MiB, on agent {e.get('agent')} ({e.get('host')})"
        )
        last = (e.get("log_tail") or "").strip().splitlines()
        if last:
            lines.append(f"  last log line: {last[-1][:200]}")
    return "\n".join(lines)
