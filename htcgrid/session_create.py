"""A submit's writes to the stores (``GridService.submit``): large payloads to the data plane,
and the session created without a read before it when nothing has to be written first."""

from __future__ import annotations

from collections.abc import Sequence

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import Conflict
from htcgrid.models import NewTask, SessionSpec
from htcgrid.store import TaskStore


def offload_large(
    data: DataPlane, limit: int, session_id: str, tasks: Sequence[NewTask]
) -> list[NewTask]:
    """``tasks`` with each payload over ``limit`` bytes put in the data plane."""
    out = []
    for t in tasks:
        if t.payload is not None and len(t.payload) > limit:
            key = keys.task_input(session_id, t.index)
            data.put(key, t.payload)
            t = NewTask(t.index, t.priority, payload_ref=key)
        out.append(t)
    return out


def create_unread(
    store: TaskStore, spec: SessionSpec, tasks: Sequence[NewTask], owner: str, now: float
) -> bool:
    """Create the session without reading it first; the existing session (its create is
    idempotent) is read only when the create meets one, for whose it is. Reading it before
    every create was a fifth of a single-task round trip's store calls."""
    try:
        created = store.create_session(spec, tasks, now)
    except Conflict:
        _not_anothers(store, spec.id, owner)
        raise
    if not created:
        _not_anothers(store, spec.id, owner)
    return created


def _not_anothers(store: TaskStore, session_id: str, owner: str) -> None:
    existing = store.get_session(session_id)
    if existing is not None and existing.spec.owner != owner:
        raise Conflict(f"session id {session_id} is already in use")
