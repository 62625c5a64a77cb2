"""A session's tasks as callers name them: by task id (``"<session_id>_<i>"``) or by index
(``3``, or ``"3"`` as a command line passes it). Used by the per-task cancel on every path
(HTTP, in process, CLI, ``Executor``), so each names tasks the same way and refuses the same
names with the same words."""

from __future__ import annotations

from collections.abc import Sequence

from htcgrid.errors import ValidationError
from htcgrid.models import SessionInfo, split_task_id

MAX_NAMED_TASKS = 1_000_000  # the most tasks one call may name (a session's largest size)


def task_indexes(info: SessionInfo, tasks: Sequence[str | int]) -> list[int]:
    """The distinct indexes ``tasks`` name, ascending. Raises ``ValidationError`` naming the
    first entry that is not one of the session's tasks."""
    if len(tasks) > MAX_NAMED_TASKS:
        raise ValidationError(f"name at most {MAX_NAMED_TASKS} tasks in one call")
    return sorted({_index(info, name) for name in tasks})


def _index(info: SessionInfo, name: str | int) -> int:
    index = -1
    if isinstance(name, int) and not isinstance(name, bool):
        index = name
    elif isinstance(name, str) and name.isascii() and name.isdigit():
        index = int(name)
    elif isinstance(name, str):
        try:
            session_id, index = split_task_id(name)
        except ValueError:
            session_id = ""
        if session_id != info.id:
            index = -1
    if not 0 <= index < info.spec.task_count:
        raise ValidationError(
            f"{name!r} is not a task of session {info.id}: give a task id of it or an index "
            f"from 0 to {info.spec.task_count - 1}"
        )
    return index
