"""Memoization: a task of a session submitted with ``cache`` is answered from the output of an
earlier finished task of the same owner, function version and input, without running.

The records are the task store's grid metadata (point reads and writes, on every backend)::

    memo/<owner>/<function>/<version>/<sha256 of the payload>   "<task id> <created> <computed>"
    memo-of/<session id>/<n>                                   the memo keys one batch wrote

The first says which task holds an answer: ``created`` is its session's creation time (a
session id used again later is another session) and ``computed`` when the answer was worked
out (an answer given from the cache keeps the time of the run it copies). The second lists,
per batch of a session's finished tasks, the memo keys they wrote, so ``forget`` removes a
deleted or purged session's records with point reads (``n`` = 0, 1, … up to the first one
missing), never a scan of the metadata.

A record is a hint, checked on every use: its task must still be ``finished`` in the same
session of the same owner, and young enough for the asking session. Anything else is a miss,
and a miss costs one run, never a wrong answer. Failed tasks are never recorded.
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
SAME_TIME = 1e-6  # creation times read back from a store, compared as equal within this


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
    computed_at: float


@dataclass(frozen=True)
class Answer:
    """A recorded answer that passed its checks: the task holding it, and when it was worked out."""

    task: TaskRecord
    computed_at: float


def lookup(
    store: TaskStore, key: str, owner: str, max_age_seconds: float, now: float
) -> Answer | None:
    """The answer recorded under ``key`` if it is still good: its task finished, in the
    session that recorded it, of ``owner``, worked out at most ``max_age_seconds`` ago."""
    value = store.get_meta(key)
    if value is None:
        return None
    try:
        tid, created, computed = value.split(" ")
        created_at, computed_at = float(created), float(computed)
    except ValueError:
        return None
    if now - computed_at > max_age_seconds:
        return None
    task = store.get_task(tid)
    if task is None or task.state is not TaskState.FINISHED:
        return None
    info = store.get_session(task.session_id)
    if (
        info is None
        or info.spec.owner != owner
        or abs(info.spec.created_at - created_at) > SAME_TIME
    ):
        return None
    return Answer(task, computed_at)


def record(
    store: TaskStore, spec: SessionSpec, entries: Sequence[Entry], first_slot: int = 0
) -> int:
    """Record ``entries`` (tasks of session ``spec`` whose completion was accepted) and list
    their keys in the session's index; returns the index slot used, a hint for the next call.
    A session deleted meanwhile has its records removed again, so none outlives it."""
    for entry in entries:
        store.put_meta(entry.key, f"{entry.task_id} {spec.created_at!r} {entry.computed_at!r}")
    listed = json.dumps({"batch": uuid.uuid4().hex, "keys": [e.key for e in entries]})
    slot = first_slot
    while store.set_meta_if_absent(index_key(spec.id, slot), listed) != listed:
        slot += 1
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
