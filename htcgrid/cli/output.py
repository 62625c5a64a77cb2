"""How read commands print: ``--json`` for programs, aligned tables and plain text for people.

The readable form shows times in ISO 8601 (UTC), tracebacks and logs as the text they are,
and non-ASCII characters as themselves; the ``--json`` form is the API's shape, unchanged.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import click

from htcgrid import evidence

F = TypeVar("F", bound=Callable[..., Any])
TIME_FIELDS = ("created_at", "submitted_at", "started_at", "finished_at")
STATES = ("pending", "processing", "finished", "failed", "cancelled")
ONE_LINE = str.maketrans("\r\n\t", "   ")
CELL_LIMIT = 60  # characters of a value shown in a table cell


def json_option(fn: F) -> F:
    """``--json``: print the API's JSON instead of the readable form."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        envvar="HTCGRID_JSON",
        show_envvar=True,
        help="Print JSON for programs instead of text for people.",
    )(fn)


def to_json(value: Any, indent: int | None = 2) -> str:
    separators = None if indent else (",", ":")
    return json.dumps(
        value, indent=indent, sort_keys=True, ensure_ascii=False, separators=separators
    )


def iso(epoch: float | None) -> str:
    """An epoch time as ISO 8601 in UTC (``2026-11-29T03:40:42Z``); '-' for none."""
    if not epoch:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def compact(value: Any, limit: int = CELL_LIMIT) -> str:
    """A JSON value on one short line: strings as they are, the rest as compact JSON."""
    text = value if isinstance(value, str) else to_json(value, indent=None)
    text = text.translate(ONE_LINE)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], header: bool = True) -> str:
    """Rows under headers in aligned columns; numbers right-aligned."""
    cells = [[str(h).upper() for h in headers]] if header else []
    cells += [[_cell(v) for v in row] for row in rows]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    body = cells[1:] if header else cells
    numeric = [bool(body) and all(_is_number(r[i]) for r in body) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(row, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    return text.replace(".", "", 1).replace("-", "", 1).isdigit()


def _cell(value: Any) -> str:
    return "-" if value is None else compact(value)


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s)) or "no tasks"


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name: value`` lines, names aligned."""
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in pairs)


def session_text(status: Mapping[str, Any]) -> str:
    state = "complete" if status.get("complete") else "running"
    if status.get("cancelled"):
        state += ", cancelled"
    return fields(
        [
            ("session", status["session_id"]),
            ("state", state),
            ("tasks", f"{status['task_count']}: {counts_text(status['counts'])}"),
            ("function", status.get("function", "-")),
            ("priority", status.get("priority", "-")),
            ("owner", status.get("owner") or "-"),
            ("created", iso(status.get("created_at"))),
        ]
    )


def results_table(results: Iterable[Any]) -> str:
    """One row per task result (``TaskResult``): output, or the error's type and message."""
    rows = []
    for r in results:
        error = r.error or {}
        shown = (
            r.output
            if r.ok
            else f"{error.get('type', '')}: {error.get('message', '')}"
            if error
            else ""  # cancelled: no error to show
        )
        state = r.state.value + (" (cached)" if getattr(r, "cached", False) else "")
        rows.append([r.index, r.task_id, state, r.attempts, shown])
    return table(["#", "task", "state", "attempts", "output or error"], rows)


def task_text(task: Mapping[str, Any]) -> str:
    """A task in full; its error's traceback and its log as plain text below the fields."""
    error = task.get("error") or {}
    pairs: list[tuple[str, Any]] = [
        ("task", task["task_id"]),
        ("session", task.get("session_id", "-")),
        ("state", task["state"]),
        ("attempts", task.get("attempts", "-")),
    ]
    pairs += [(name.removesuffix("_at"), iso(task.get(name))) for name in TIME_FIELDS[1:]]
    pairs.append(("payload", compact(task.get("payload"), 1000)))
    if error:
        pairs.append(("error", f"{error.get('type', '')}: {error.get('message', '')}"))
    elif task["state"] == "finished":
        pairs.append(("output", compact(task.get("output"), 1000)))
    if task.get("cached"):
        pairs.append(("cached", "yes: an earlier task's output, given without running"))
    text = fields(pairs)
    if error.get("traceback"):
        text += "\n\ntraceback:\n" + str(error["traceback"]).rstrip()
    if task.get("log"):
        text += "\n\nlog:\n" + str(task["log"]).rstrip()
    if task.get("evidence"):  # the attempts that killed their worker
        text += "\n\nworker deaths:\n" + evidence.describe_entries(task["evidence"])
    return text


def functions_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Every version of every function, ``*`` marking the current one of each."""
    rows = [
        [
            ("* " if v["version"] == r["current"] else "  ") + r["name"],
            f"v{v['version']}",
            v.get("runtime", "python"),
            v.get("handler") or "-",
            str(v.get("sha256", ""))[:12],
            iso(v.get("created_at")),
        ]
        for r in records
        for v in r["versions"]
    ]
    headers = ["function", "version", "runtime", "handler", "sha256", "deployed"]
    return table(headers, rows, header=False)
