"""Memoization: a task of a session submitted with ``cache`` is answered from the output of an
earlier finished task of the same owner, function version and input, without running.

The records are the task store's grid metadata (point reads and writes, on every backend)::

    memo/<owner>/<function>/<version>/<sha256 of the payload>   "<task id> <submitted> <computed>"
    memo-of/<session id>/<n>                                   the memo keys one batch wrote

The first says which task worked an answer out: ``submitted`` is when that task was submitted
(a session id used again later holds other tasks) and ``computed`` when its run began. Only a
run records an answer; a task answered from the cache does not, so an answer lives as long as
the session that worked it out, and the next run after that session is purged records anew.
The second lists, per batch of a session's finished tasks, the memo keys they wrote, so
``forget`` removes a deleted or purged session's records with point reads (``n`` = 0, 1, … up
to the first one missing), never a scan of the metadata.

A record is a hint, checked on every use (two point reads: the record, its task): its task must
still be ``finished`` and be the task that recorded it, and the answer young enough for the
asking session. Anything else is a miss, and a miss costs one run, never a wrong answer.
Failed tasks are never recorded. Owners never share records: the owner is in the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from htcgrid.errors import GridError
from htcgrid.models import SessionSpec, TaskRecord, TaskState, split_task_id
from htcgrid.store import TaskStore

log = logging.getLogger("htcgrid.memo")
PREFIX = "memo/"
INDEX_PREFIX = "memo-of/"
SAME_TIME = 1e-6  # times read back from a store, compared as equal within this


def input_digest(payload: bytes) -> str:
    """What identifies a task's input: the sha256 of its payload's bytes."""
    return hashlib.sha256(payload).hexdigest()


def memo_key(owner: str, function: str, version: str, digest: str) -> str:
    """Where the answer to ``digest`` run by ``function`` at ``version`` is recorded, per owner:
    owners never see each other's answers, and a new version asks anew."""
    return f"{PREFIX}{owner}/{function}/{version}/{digest}"


def index_key(session_id: str, n: int) -> str:
    return f"{INDEX_PREFIX}{session_id}/{n}"


@dataclass(frozen=True)
class Entry:
    """A finished task's answer, to record under ``key``."""

    key: str
    task_id: str
    submitted_at: float  # the task's own (``Lease.submitted_at``)
    computed_at: float  # when its run began


@dataclass(frozen=True)
class Answer:
    """A recorded answer that passed its checks: the task holding it, and when it was worked out."""

    task: TaskRecord
    computed_at: float


def lookup(store: TaskStore, key: str, max_age_seconds: float, now: float) -> Answer | None:
    """The answer recorded under ``key`` if it is still good: its task is the one that
    recorded it and is finished, and it was worked out at most ``max_age_seconds`` ago."""
    value = store.get_meta(key)
    if value is None:
        return None
    try:
        tid, submitted, computed = value.split(" ")
        submitted_at, computed_at = float(submitted), float(computed)
    except ValueError:
        return None
    if now - computed_at > max_age_seconds:
        return None
    task = store.get_task(tid)
    if task is None or task.state is not TaskState.FINISHED:
        return None
    if abs(task.submitted_at - submitted_at) > SAME_TIME:
        return None  # another session's task now has that id
    return Answer(task, computed_at)


def record(
    store: TaskStore, spec: SessionSpec, entries: Sequence[Entry], first_slot: int = 0
) -> int:
    """Record ``entries`` (tasks of session ``spec`` whose completion was accepted) and list
    their keys in the session's index; returns the index slot used, a hint for the next call.
    The index comes first, so a record is listed before it exists (a crash leaves no record
    that ``forget`` cannot find), and a session deleted meanwhile has them removed again."""
    listed = json.dumps({"batch": uuid.uuid4().hex, "keys": [e.key for e in entries]})
    slot = first_slot
    while store.set_meta_if_absent(index_key(spec.id, slot), listed) != listed:
        slot += 1
    for entry in entries:
        value = f"{entry.task_id} {entry.submitted_at!r} {entry.computed_at!r}"
        store.put_meta(entry.key, value)
    info = store.get_session(spec.id)
    if info is None or abs(info.spec.created_at - spec.created_at) > SAME_TIME:
        _remove(store, spec.id, index_key(spec.id, slot), listed)
    return slot + 1


def forget(store: TaskStore, session_id: str) -> int:
    """Remove the records of ``session_id``'s tasks and its index; returns how many answers
    were removed. Answers recorded since by another session under the same keys stay."""
    removed = 0
    slot = 0
    while (listed := store.get_meta(index_key(session_id, slot))) is not None:
        removed += _remove(store, session_id, index_key(session_id, slot), listed)
        slot += 1
    return removed


def forget_quietly(store: TaskStore, session_ids: Sequence[str]) -> None:
    """``forget`` each session; a store error is logged, not raised: the session is gone
    already, and a record left behind is only ever a miss."""
    for session_id in session_ids:
        try:
            forget(store, session_id)
        except GridError as exc:
            log.warning("could not remove the cached answers of session %s: %s", session_id, exc)


def _remove(store: TaskStore, session_id: str, slot_key: str, listed: str) -> int:
    removed = 0
    for key in _keys(listed):
        value = store.get_meta(key)
        if value is not None and _session_of(value) == session_id:
            store.delete_meta(key)
            removed += 1
    store.delete_meta(slot_key)
    return removed


def _keys(listed: str) -> list[str]:
    try:
        keys = json.loads(listed)["keys"]
    except (ValueError, KeyError, TypeError):
        return []
    return [k for k in keys if isinstance(k, str) and k.startswith(PREFIX)]


def _session_of(value: str) -> str | None:
    try:
        return split_task_id(value.split(" ", 1)[0])[0]
    except ValueError:
        return None
