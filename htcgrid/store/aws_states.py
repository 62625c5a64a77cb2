"""``TaskStore.tasks_in_state`` on AWS: a session's tasks in one state, a page at a time.

HTC-Grid's ``gsi_session_index`` is keyed by (``session_id``, ``task_status``), and a task's
``task_status`` is its state followed by its session's partition, so the tasks of one session
in one state are a single key of that index: a page is one ``Query`` of at most ``limit``
keys, then one consistent batch read of those tasks. The cursor is the task id where the
query stopped. The index may lag a write by a moment, so a task read back in another state
than the one asked for is left out of the page. Pending tasks are two keys: ``pending<p>``,
then the held tasks' ``held<p>`` (``aws_held``), whose cursors start with ``HELD_PHASE``.
"""

from __future__ import annotations

from htcgrid.errors import ValidationError
from htcgrid.models import TaskState
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import S, task_from_item, text
from htcgrid.store.aws_layout import HELD, held_status, state_of, status
from htcgrid.store.aws_sessions import RESULT_FIELDS
from htcgrid.store.state_pages import Page, check_limit

HELD_PHASE = "held:"


def tasks_in_state(
    grid: Grid, session_id: str, state: TaskState, cursor: str | None, limit: int
) -> Page:
    check_limit(limit)
    stored = status(TaskState(state), session_id)
    if state is TaskState.PENDING and cursor and cursor.startswith(HELD_PHASE):
        return _page(grid, session_id, held_status(session_id), cursor[len(HELD_PHASE) :], limit)
    records, after = _page(grid, session_id, stored, cursor, limit)
    if after is not None or state is not TaskState.PENDING:
        return records, after
    if len(records) >= limit:  # the held tasks, pending too, on the next pages
        return records, HELD_PHASE
    held, after = _page(grid, session_id, held_status(session_id), None, limit - len(records))
    return records + held, after


def _page(grid: Grid, session_id: str, stored: str, cursor: str | None, limit: int) -> Page:
    task_status = S(stored)
    query = {
        "TableName": grid.tasks,
        "IndexName": "gsi_session_index",
        "KeyConditionExpression": "session_id = :s AND task_status = :t",
        "ExpressionAttributeValues": {":s": S(session_id), ":t": task_status},
        "Limit": limit,
    }
    if cursor:
        if not cursor.startswith(session_id + "_"):
            raise ValidationError(f"not a cursor of this listing: {cursor!r}")
        start = {"task_id": S(cursor), "session_id": S(session_id), "task_status": task_status}
        query["ExclusiveStartKey"] = start
    answer = grid.calls(grid.db.query, **query)
    keys = [{"task_id": S(str(text(k, "task_id")))} for k in answer.get("Items", [])]
    items = grid.batch_get(grid.tasks, keys, RESULT_FIELDS)
    wanted = state_of(stored)
    records = [task_from_item(i, with_payload=False) for i in items]
    records = sorted((r for r in records if r.state is wanted), key=lambda r: r.index)
    last = answer.get("LastEvaluatedKey")
    prefix = HELD_PHASE if stored.startswith(HELD) else ""
    return records, None if not last else prefix + str(text(last, "task_id"))
