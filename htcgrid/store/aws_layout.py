"""Names and shapes of the AWS resources of one grid, as HTC-Grid lays them out.

One grid is one ``tag``:

- ``htc_tasks_state_table-<tag>``: HTC-Grid's state table (hash key ``task_id``; GSIs
  ``gsi_ttl_index`` and ``gsi_session_index``; ``task_status`` is ``<state><partition>`` with
  ``partition = md5(session_id) % 32``), plus ``gsi_done_index`` (session, completion number)
  for paging results in completion order;
- ``htc_sessions_table-<tag>``: one item per session (spec, completion counter, cancelled flag),
  with ``gsi_created_index`` for listing newest first;
- ``htc_grid_meta_table-<tag>``: small grid-wide records (``scope``, ``meta_key``);
- ``htc_task_queue-<tag>__<q>``: standard SQS queues, ``q`` = 0 … N-1, highest first, each
  with its dead-letter queue ``htc_task_queue_dlq-<tag>__<q>``.

``htcgrid aws create`` builds them; the task store only ever opens them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from htcgrid.models import MAX_PRIORITY, TaskState

MAX_STATE_PARTITIONS = 32
DEFAULT_PRIORITY_QUEUES = MAX_PRIORITY + 1
VISIBILITY_SECONDS = 40  # HTC-Grid's queue default: a received message not claimed reappears
RETENTION_SECONDS = 14 * 86400
MAX_RECEIVE_COUNT = 4
NONE = "None"  # HTC-Grid's "no owner" / "no receipt" value
HELD = "held"  # a held task's state in ``task_status`` (see ``aws_held``)


def tasks_table(tag: str) -> str:
    return f"htc_tasks_state_table-{tag}"


def sessions_table(tag: str) -> str:
    return f"htc_sessions_table-{tag}"


def meta_table(tag: str) -> str:
    return f"htc_grid_meta_table-{tag}"


def queue_name(tag: str, queue: int) -> str:
    return f"htc_task_queue-{tag}__{queue}"


def dlq_name(tag: str, queue: int) -> str:
    return f"htc_task_queue_dlq-{tag}__{queue}"


def partition(session_id: str) -> int:
    return int(hashlib.md5(session_id.encode()).hexdigest(), 16) % MAX_STATE_PARTITIONS


def status(state: TaskState, session_id: str) -> str:
    """HTC-Grid's ``task_status``: the state with the session's partition appended."""
    return f"{state.value}{partition(session_id)}"


def held_status(session_id: str) -> str:
    """The ``task_status`` of a held task (``aws_held``): pending to readers, never claimed."""
    return f"{HELD}{partition(session_id)}"


def state_of(task_status: str) -> TaskState:
    value = task_status.rstrip("0123456789")
    return TaskState.PENDING if value == HELD else TaskState(value)


def queue_of(priority: int, queues: int) -> int:
    """The queue of an htcgrid priority (0 to 9) when the grid has ``queues`` queues: spread
    evenly, so 10 queues keep every priority apart and 1 queue holds them all."""
    return min(queues - 1, priority * queues // DEFAULT_PRIORITY_QUEUES)


def _attrs(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": k, "AttributeType": v} for k, v in types.items()]


def _key(hash_key: str, range_key: str | None = None) -> list[dict[str, str]]:
    schema = [{"AttributeName": hash_key, "KeyType": "HASH"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
    return schema


def _gsi(name: str, hash_key: str, range_key: str, include: list[str] | None = None) -> Any:
    projection: dict[str, Any] = {"ProjectionType": "KEYS_ONLY"}
    if include:
        projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": include}
    return {"IndexName": name, "KeySchema": _key(hash_key, range_key), "Projection": projection}


TTL_INCLUDE = [
    "task_owner", "task_priority", "attempt", "max_attempts", "function", "priority", "resends",
]  # fmt: skip


def table_definitions(tag: str) -> list[dict[str, Any]]:
    """``CreateTable`` arguments of the three tables (on-demand billing)."""
    tasks = {
        "TableName": tasks_table(tag),
        "KeySchema": _key("task_id"),
        "AttributeDefinitions": _attrs(
            task_id="S",
            task_status="S",
            heartbeat_expiration_timestamp="N",
            session_id="S",
            done_seq="N",
        ),
        "GlobalSecondaryIndexes": [
            _gsi("gsi_ttl_index", "task_status", "heartbeat_expiration_timestamp", TTL_INCLUDE),
            _gsi("gsi_session_index", "session_id", "task_status"),
            _gsi("gsi_done_index", "session_id", "done_seq"),
        ],
    }
    sessions = {
        "TableName": sessions_table(tag),
        "KeySchema": _key("session_id"),
        "AttributeDefinitions": _attrs(session_id="S", listing="S", created_at="N"),
        "GlobalSecondaryIndexes": [_gsi("gsi_created_index", "listing", "created_at")],
    }
    meta = {
        "TableName": meta_table(tag),
        "KeySchema": _key("scope", "meta_key"),
        "AttributeDefinitions": _attrs(scope="S", meta_key="S"),
    }
    return [{**t, "BillingMode": "PAY_PER_REQUEST"} for t in (tasks, sessions, meta)]
