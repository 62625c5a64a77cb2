"""DynamoDB items of the AWS task store and the records built from them.

Attribute values are written in DynamoDB's wire shape (``{"S": …}``, ``{"N": …}``). Times are
epoch seconds as floats, written with ``repr`` so they read back exactly; HTC-Grid's own
millisecond columns (``submission_timestamp``, ``task_completion_timestamp``) are kept beside.
"""

from __future__ import annotations

from typing import Any

from htcgrid.models import (
    ErrorInfo,
    Lease,
    NewTask,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    task_id,
)
from htcgrid.store.aws_layout import NONE, held_status, queue_of, state_of, status

Item = dict[str, Any]


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: float) -> dict[str, str]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def B(value: bytes) -> dict[str, bytes]:
    return {"B": value}


def BOOL(value: bool) -> dict[str, bool]:
    return {"BOOL": value}


def text(item: Item, name: str, default: str | None = None) -> str | None:
    value = item.get(name)
    return default if value is None or "NULL" in value else str(value["S"])


def num(item: Item, name: str) -> float | None:
    value = item.get(name)
    return None if value is None or "NULL" in value else float(value["N"])


def integer(item: Item, name: str, default: int = 0) -> int:
    value = item.get(name)
    return default if value is None else int(value["N"])


def blob(item: Item, name: str) -> bytes | None:
    value = item.get(name)
    return None if value is None else bytes(value["B"])


def session_item(spec: SessionSpec, now: float) -> Item:
    """A session being created: invisible (``status=creating``) until ``open_session``."""
    return {
        "session_id": S(spec.id),
        "status": S("creating"),
        "task_count": N(spec.task_count),
        "function": S(spec.function),
        "priority": N(spec.priority),
        "max_attempts": N(spec.max_attempts),
        "timeout_seconds": N(float(spec.timeout_seconds)),
        "retry_on_error": BOOL(spec.retry_on_error),
        "owner": S(spec.owner),
        "content_hash": S(spec.content_hash),
        "created_at": N(float(spec.created_at or now)),
        "done_count": N(0),
        "cancelled": BOOL(False),
        **(
            {}
            if spec.retention_seconds is None
            else {"retention_seconds": N(spec.retention_seconds)}
        ),
        **({} if spec.poison_after is None else {"poison_after": N(spec.poison_after)}),
        **({} if spec.cache_seconds is None else {"cache_seconds": N(spec.cache_seconds)}),
    }


def session_from_item(item: Item) -> SessionInfo:
    spec = SessionSpec(
        id=str(text(item, "session_id")),
        task_count=integer(item, "task_count"),
        function=str(text(item, "function")),
        priority=integer(item, "priority"),
        max_attempts=integer(item, "max_attempts"),
        timeout_seconds=num(item, "timeout_seconds") or 0.0,
        retry_on_error=bool(item["retry_on_error"]["BOOL"]),
        owner=text(item, "owner", "") or "",
        content_hash=text(item, "content_hash", "") or "",
        created_at=num(item, "created_at") or 0.0,
        retention_seconds=num(item, "retention_seconds"),
        poison_after=integer(item, "poison_after") if "poison_after" in item else None,
        cache_seconds=num(item, "cache_seconds"),
    )
    retried = integer(item, "retried") if "retried" in item else 0  # see aws_retry
    done = integer(item, "done_count") - retried
    return SessionInfo(spec, done, bool(item["cancelled"]["BOOL"]), retried=retried)


def task_item(spec: SessionSpec, task: NewTask, now: float, queues: int, resend_at: float) -> Item:
    """A new ``pending`` row with every attribute of HTC-Grid's, plus htcgrid's own."""
    tid = task_id(spec.id, task.index)
    item: Item = {
        "task_id": S(tid),
        "session_id": S(spec.id),
        "parent_session_id": S(spec.id),
        "submission_timestamp": N(int(now * 1000)),
        "task_completion_timestamp": N(0),
        "task_status": S(held_status(spec.id) if task.held else status(TaskState.PENDING, spec.id)),
        "task_owner": S(NONE),
        "retries": N(0),
        "resends": N(0),
        "task_definition": S("none"),
        "sqs_handler_id": S(NONE),
        "heartbeat_expiration_timestamp": N(float(resend_at)),
        "task_priority": N(queue_of(task.priority, queues)),
        "priority": N(task.priority),
        "idx": N(task.index),
        "attempt": N(0),
        "max_attempts": N(spec.max_attempts),
        "function": S(spec.function),
        "timeout_seconds": N(float(spec.timeout_seconds)),
        "retry_on_error": BOOL(spec.retry_on_error),
        "submitted_at": N(float(now)),
    }
    if task.payload is not None:
        item["payload"] = B(task.payload)
    if task.payload_ref is not None:
        item["payload_ref"] = S(task.payload_ref)
    return item


def task_from_item(item: Item, with_payload: bool = True) -> TaskRecord:
    state = state_of(str(text(item, "task_status")))
    owner = text(item, "task_owner")
    return TaskRecord(
        task_id=str(text(item, "task_id")),
        session_id=str(text(item, "session_id")),
        index=integer(item, "idx"),
        state=state,
        attempt=integer(item, "attempt"),
        max_attempts=integer(item, "max_attempts"),
        priority=integer(item, "priority"),
        owner=None if owner in (None, NONE) else owner,
        output=blob(item, "output"),
        output_ref=text(item, "output_ref"),
        error=ErrorInfo.from_json(text(item, "error")),
        log=text(item, "log", "") or "",
        cursor=None if "done_seq" not in item else integer(item, "done_seq"),
        submitted_at=num(item, "submitted_at") or 0.0,
        started_at=num(item, "started_at"),
        finished_at=num(item, "finished_at"),
        lease_expires_at=(
            num(item, "heartbeat_expiration_timestamp") if state is TaskState.PROCESSING else None
        ),
        payload=blob(item, "payload") if with_payload else None,
        payload_ref=text(item, "payload_ref") if with_payload else None,
        evidence=text(item, "evidence", "") or "",
        cached="cached" in item,
    )


def lease_from_item(item: Item) -> Lease:
    return Lease(
        task_id=str(text(item, "task_id")),
        session_id=str(text(item, "session_id")),
        index=integer(item, "idx"),
        attempt=integer(item, "attempt"),
        max_attempts=integer(item, "max_attempts"),
        timeout_seconds=num(item, "timeout_seconds") or 0.0,
        function=str(text(item, "function")),
        retry_on_error=bool(item["retry_on_error"]["BOOL"]),
        expires_at=num(item, "heartbeat_expiration_timestamp") or 0.0,
        payload=blob(item, "payload"),
        payload_ref=text(item, "payload_ref"),
        submitted_at=num(item, "submitted_at"),
    )
