"""The JSON shapes of what the grid answers about tasks, one function each, shared by the HTTP
API and the in-process client (``GridService`` returns records; these turn them into JSON)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from htcgrid import evidence, frames
from htcgrid.models import CancelCounts, TaskRecord

if TYPE_CHECKING:
    from htcgrid.service import ResultsPage, SessionStatus

FIRST_PAGE = 1000  # results a submit that waits answers with at most (the client pages on)


def output_url(record: TaskRecord) -> str | None:
    """Where to fetch an output that is not carried inline (``GET`` gives its JSON)."""
    if record.output is None and record.output_ref is not None:
        return f"/v1/tasks/{record.task_id}/output"
    return None


def payload_url(record: TaskRecord) -> str | None:
    if record.payload is None and record.payload_ref is not None:
        return f"/v1/tasks/{record.task_id}/payload"
    return None


def result_json(record: TaskRecord, framed: bool = False) -> bytes:
    """The one shape of a task result, as JSON: spliced from the stored output, which is
    never parsed here. An output too big to carry inline is null, with its ``output_url``; a
    task answered from the cache (memoization) says ``"cached": true``. ``framed``: an output
    is left out, its length given as ``output_bytes`` (``htcgrid.frames``)."""
    error = record.error.to_json().encode() if record.error else b"null"
    if record.output is None:
        output = b"null"
    elif framed:
        output = b'null,"output_bytes":%d' % len(record.output)
    else:
        output = record.output
    url = output_url(record)
    return b'{"task_id":"%s","index":%d,"state":"%s","attempts":%d,"output":%s,"error":%s%s%s}' % (
        record.task_id.encode(),
        record.index,
        record.state.value.encode(),
        record.attempt,
        output,
        error,
        b',"output_url":"%s"' % url.encode() if url else b"",
        b',"cached":true' if record.cached else b"",
    )


def results_json(page: ResultsPage, framed: bool = False) -> bytes:
    """A page of results: ``{"results": [...], "cursor": n, "next": n, "complete": bool}``;
    ``next`` is the cursor's old name, kept for clients written before it. ``framed``: the
    outputs follow the page, raw (``htcgrid.frames``)."""
    results = b",".join([result_json(r, framed) for r in page.results])
    end = b"true" if page.complete else b"false"
    tail = b'],"cursor":%d,"next":%d,"complete":%s}' % (page.cursor, page.cursor, end)
    head = b'{"results":[' + results + tail
    if not framed:
        return head
    return frames.join(head, [r.output for r in page.results if r.output is not None])


def result_dict(record: TaskRecord) -> dict[str, Any]:
    """``result_json`` decoded."""
    return json.loads(result_json(record))  # type: ignore[no-any-return]


def task_dict(record: TaskRecord) -> dict[str, Any]:
    """A task in full: its result plus payload, log and timings; a payload kept in the data
    plane is null, with its ``payload_url``."""
    return {
        **result_dict(record),
        "session_id": record.session_id,
        "payload": json.loads(record.payload) if record.payload is not None else None,
        "payload_url": payload_url(record),
        "log": record.log,
        "owner": record.owner,
        "submitted_at": record.submitted_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "evidence": evidence.load(record.evidence),
        "cached": record.cached,
    }


def cancel_dict(session_id: str, counts: CancelCounts) -> dict[str, Any]:
    """HTC-Grid's per-session cancel answer."""
    return {
        "session_id": session_id,
        "cancelled_pending": counts.pending,
        "cancelled_processing": counts.processing,
        "total_cancelled_tasks": counts.total,
    }


def status_dict(status: SessionStatus) -> dict[str, Any]:
    """A session's options and progress: its counts per state, and whether it is complete."""
    spec, info = status.info.spec, status.info
    return {
        "session_id": spec.id,
        "task_count": spec.task_count,
        "function": spec.function,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "timeout_seconds": spec.timeout_seconds,
        "owner": spec.owner,
        "created_at": spec.created_at,
        "complete": info.complete,
        "cancelled": info.cancelled,
        "done_count": info.done_count,
        "counts": {state.value: n for state, n in status.counts.items()},
    }
