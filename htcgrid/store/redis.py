"""``redis://host:port/db?prefix=htcgrid:`` (or ``rediss://``): the task store on Redis.

Every compare-and-set of design §2 is one Lua script (``redis_scripts``), so a batch of
claims or completions is one round trip and one atomic step. The layout, every key under the
prefix ``P`` (default ``htcgrid:``):

    P task:<task_id>     hash, one per task (fields in ``redis_scripts``)
    P session:<id>       hash: the spec, the completion count and one counter per state
    P queue:<fn>:<owner> sorted set of pending tasks, the queue of one function and owner
    P owners:<fn>        set of owners that may have a queue of that function
    P running            hash: owner -> its tasks now processing (fair share, ``redis_share``)
    P leases             sorted set of processing tasks by lease expiry (the TTL checker's index)
    P done:<id>          sorted set of a session's terminal tasks by completion number
    P failed:<id>        sorted set of a session's failed tasks by index (``redis_states``)
    P sessions           sorted set of sessions by creation time; P owner:<owner> per owner
    P functions          set of function names that have a queue
    P seq                the FIFO counter, one step per submitted session

Tasks are hashes rather than one packed value: each script reads and writes only the fields
it needs, and small hashes use Redis's compact listpack encoding anyway.

A queue member is ``<20-digit session counter><10-digit position><task_id>`` with score
``-priority``. Redis orders equal scores by member bytes, so the order "priority first, then
FIFO" needs no floating-point arithmetic and stays exact for any number of submissions; a score
like ``priority * 2**k + seq`` would stop separating tasks once it passed 2**53.

Waiting blocks on the server: scripts that make work available ``PUBLISH`` to ``P wake`` and
``P wake:<function>``, scripts that finish tasks to ``P progress:<id>``. A waiter subscribes
first, then checks, then blocks, so it cannot miss a wake-up.

The backend targets a standalone Redis ≥ 7.0 (or its replicas via Sentinel), not Redis Cluster:
scripts derive the keys of the tasks they touch from the prefix.

URL options, removed before the URL reaches redis-py: ``prefix=`` (default ``htcgrid:``) and
``allow_eviction_check_failure=1`` (see ``redis_connect.check_eviction_policy``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, cast

from redis.commands.core import Script

from htcgrid.errors import (
    Conflict,
    NotFound,
    ValidationError,
)
from htcgrid.models import (
    ExpiryReport,
    HeartbeatStatus,
    Lease,
    NewTask,
    Outcome,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    split_task_id,
    task_id,
)
from htcgrid.store import redis_scripts as lua
from htcgrid.store.base import TaskStore, wanted_indexes
from htcgrid.store.redis_connect import (
    connect,
    translate_errors,
)
from htcgrid.store.redis_held import RedisHeld
from htcgrid.store.redis_layout import (
    PAYLOAD_FIELDS,
    RECORD_FIELDS,
    Keys,
    session_info,
    task_record,
)
from htcgrid.store.redis_retry import RETRY
from htcgrid.store.redis_share import CLAIM, RedisShare
from htcgrid.store.redis_states import RedisStates
from htcgrid.store.redis_wait import Waiter

FINAL_STATES = frozenset({TaskState.PENDING, TaskState.FINISHED, TaskState.FAILED})


def _check_indices(spec: SessionSpec, tasks: Sequence[NewTask]) -> None:
    # Cancel and delete visit a session's tasks by index, so they must be exactly 0..n-1.
    if len(tasks) != spec.task_count or {t.index for t in tasks} != set(range(len(tasks))):
        raise ValidationError(
            f"session {spec.id}: task indices must be 0..{spec.task_count - 1}, each once"
        )


# ---- the store -----------------------------------------------------------------------------


class RedisTaskStore(RedisShare, RedisHeld, RedisStates, TaskStore):
    """``redis://host:port/db?prefix=htcgrid:``; see the module docstring for the layout."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self._client, prefix = connect(url)
        self.keys = Keys(prefix)
        register = self._client.register_script
        self._create = register(lua.writing(lua.CREATE))
        self._claim = register(lua.writing(CLAIM))
        self._heartbeat = register(lua.writing(lua.HEARTBEAT))
        self._complete = register(lua.writing(lua.COMPLETE))
        self._expire = register(lua.writing(lua.EXPIRE))
        self._delete = register(lua.writing(lua.DELETE))
        self._retry = register(lua.writing(RETRY))
        self._depth = register(lua.reading(lua.DEPTH))
        self._results = register(lua.reading(lua.RESULTS))
        self._waiter = Waiter(self._client)

    def _run(self, script: Script, *args: Any) -> Any:
        return script(args=[self.keys.prefix, *args])

    def close(self) -> None:
        self._waiter.close()
        self._client.close()

    # ---- clients ------------------------------------------------------------------------

    @translate_errors
    def create_session(self, spec: SessionSpec, tasks: Sequence[NewTask], now: float) -> bool:
        _check_indices(spec, tasks)
        args: list[Any] = [
            spec.id,
            spec.content_hash,
            spec.owner,
            spec.function,
            spec.priority,
            spec.max_attempts,
            float(spec.timeout_seconds),
            int(spec.retry_on_error),
            spec.task_count,
            float(spec.created_at or now),
            float(now),
        ]
        own = {"rs": spec.retention_seconds, "pa": spec.poison_after, "cs": spec.cache_seconds}
        pairs = [(name, repr(value)) for name, value in own.items() if value is not None]
        args += [len(pairs), *(x for pair in pairs for x in pair)]  # set with the session
        for t in tasks:
            flags = (
                ("p" if t.payload is not None else "")
                + ("r" if t.payload_ref is not None else "")
                + ("h" if t.held else "")
            )
            args += (t.index, t.priority, flags, t.payload or b"", t.payload_ref or "")
        created = self._run(self._create, *args)
        if created == -1:
            raise Conflict(f"session {spec.id} exists with different content")
        return bool(created == 1)

    @translate_errors
    def get_session(self, session_id: str) -> SessionInfo | None:
        h = cast(dict[bytes, bytes], self._client.hgetall(self.keys.session(session_id)))
        return session_info(session_id, h) if h else None

    @translate_errors
    def list_sessions(
        self, owner: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[SessionInfo]:
        if limit <= 0:
            return []
        index = self.keys.sessions if owner is None else self.keys.owner(owner)
        members = cast(list[bytes], self._client.zrevrange(index, offset, offset + limit - 1))
        pipe = self._client.pipeline(transaction=False)
        ids = [m[20:].decode() for m in members]  # member: 20-digit counter + session id
        for session_id in ids:
            pipe.hgetall(self.keys.session(session_id))
        found = zip(ids, pipe.execute(), strict=True)
        return [session_info(session_id, h) for session_id, h in found if h]

    @translate_errors
    def count_states(self, session_id: str) -> dict[TaskState, int]:
        names = [f"n:{state}" for state in TaskState]
        values = self._client.hmget(self.keys.session(session_id), names)
        return {state: int(v or 0) for state, v in zip(TaskState, values, strict=True)}

    @translate_errors
    def results(self, session_id: str, cursor: int = 0, limit: int = 1000) -> list[TaskRecord]:
        if limit <= 0:
            return []
        max_attempts, rows = self._run(self._results, session_id, cursor, limit, *RECORD_FIELDS)
        return [task_record(tid.decode(), values, int(max_attempts)) for tid, values in rows]

    @translate_errors
    def get_task(self, task_id: str) -> TaskRecord | None:
        try:
            session_id, _ = split_task_id(task_id)
        except ValueError:
            return None
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(self.keys.task(task_id), [*RECORD_FIELDS, *PAYLOAD_FIELDS])
        pipe.hget(self.keys.session(session_id), "ma")
        values, max_attempts = pipe.execute()
        if values[0] is None or max_attempts is None:
            return None
        n = len(RECORD_FIELDS)
        return task_record(task_id, values[:n], int(max_attempts), values[n:])

    @translate_errors
    def retry(self, session_id: str, task_ids: Sequence[str] | None, now: float) -> list[str]:
        wanted = wanted_indexes(session_id, task_ids)
        every = "1" if wanted is None else "0"
        sent = self._run(self._retry, session_id, every, *sorted(wanted or ()))
        if sent is None:
            raise NotFound(f"no session {session_id}")
        return [task_id(session_id, int(i)) for i in sent]

    @translate_errors
    def delete_session(self, session_id: str) -> bool:
        return bool(self._run(self._delete, session_id) == 1)

    @translate_errors
    def purge(self, before: float, limit: int = 100, now: float | None = None) -> list[str]:
        """Walks the sessions oldest first, a page at a time; a session ended when the task
        with its last completion number did."""
        gone: list[str] = []
        start = 0
        while len(gone) < limit:
            members = cast(list[bytes], self._client.zrange(self.keys.sessions, start, start + 199))
            if not members:
                break
            page = [m[20:].decode() for m in members]
            pipe = self._client.pipeline(transaction=False)
            for session_id in page:
                pipe.hmget(self.keys.session(session_id), "at", "tc", "done", "rt", "rs")
            ended = [
                sid
                for sid, (at, tc, done, rt, rs) in zip(page, pipe.execute(), strict=True)
                if at is not None
                and float(at) < (cutoff := before if now is None or rs is None else now - float(rs))
                and int(done) - int(rt or 0) >= int(tc)
                and self._last_ended_before(sid, int(done), cutoff)
            ]
            purged = [sid for sid in ended[: limit - len(gone)] if self.delete_session(sid)]
            gone.extend(purged)
            start += len(page) - len(purged)
        return gone

    def _last_ended_before(self, session_id: str, done: int, before: float) -> bool:
        last = self.results(session_id, done - 1, 1)
        return not last or (last[0].finished_at or before) < before

    # ---- agents ------------------------------------------------------------------------

    @translate_errors
    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        if max_tasks <= 0 or (functions is not None and not functions):
            return []
        return self._claim_leases(agent_id, max_tasks, lease_seconds, now, functions)

    @translate_errors
    def heartbeat(
        self,
        agent_id: str,
        leases: Sequence[tuple[str, int]],
        lease_seconds: float,
        now: float,
    ) -> dict[str, HeartbeatStatus]:
        if not leases:
            return {}
        pairs = [value for tid, attempt in leases for value in (tid, attempt)]
        answers = self._run(self._heartbeat, agent_id, float(now + lease_seconds), *pairs)
        return {
            tid: HeartbeatStatus(answer.decode())
            for (tid, _), answer in zip(leases, answers, strict=True)
        }

    @translate_errors
    def complete(self, agent_id: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        if not outcomes:
            return []
        args: list[Any] = [agent_id, float(now)]
        for o in outcomes:
            if o.state not in FINAL_STATES:
                raise ValueError(f"an outcome cannot move a task to {o.state}")
            flags = "".join(
                flag
                for flag, value in (
                    ("o", o.output),
                    ("r", o.output_ref),
                    ("e", o.error),
                    ("x", True if o.released else None),
                    ("c", True if o.cached else None),
                )
                if value is not None
            )
            error = o.error.to_json() if o.error else ""
            args += (o.task_id, o.attempt, o.state.value, flags)
            args += (o.output or b"", o.output_ref or "", error, o.log, o.evidence)
        return [bool(applied) for applied in self._run(self._complete, *args)]

    # ---- TTL checker -------------------------------------------------------------------

    @translate_errors
    def expire_leases(self, now: float, limit: int = 1000) -> ExpiryReport:
        if limit <= 0:
            return ExpiryReport()
        requeued, failed = self._run(self._expire, float(now), limit)
        return ExpiryReport([t.decode() for t in requeued], [t.decode() for t in failed])

    # ---- waiting and metrics ------------------------------------------------------------

    @translate_errors
    def wait_for_tasks(
        self, timeout_seconds: float, functions: Sequence[str] | None = None
    ) -> bool:
        if functions is not None and not functions:
            time.sleep(max(timeout_seconds, 0))  # nothing can ever match: wait out the timeout
            return False
        channels = [self.keys.wake_any] if functions is None else map(self.keys.wake, functions)
        depth = functools.partial(self.queue_depth, functions)
        return self._waiter.wait(channels, depth, lambda n: n > 0, timeout_seconds) > 0

    @translate_errors
    def wait_for_session(self, session_id: str, cursor: int, timeout_seconds: float) -> int:
        key = self.keys.session(session_id)

        def done_count() -> int:
            value = self._client.hget(key, "done")
            if value is None:
                raise NotFound(f"no session {session_id}")
            return int(value)

        channels = [self.keys.progress(session_id)]
        return self._waiter.wait(channels, done_count, lambda n: n > cursor, timeout_seconds)

    @translate_errors
    def queue_depth(self, functions: Sequence[str] | None = None) -> int:
        if functions is not None and not functions:
            return 0
        return int(self._run(self._depth, *(functions or ())))

    # ---- grid metadata: one hash --------------------------------------------------------

    @translate_errors
    def get_meta(self, key: str) -> str | None:
        value = cast(bytes | None, self._client.hget(self.keys.meta, key))
        return None if value is None else value.decode()

    @translate_errors
    def set_meta_if_absent(self, key: str, value: str) -> str:
        self._client.hsetnx(self.keys.meta, key, value)
        return self.get_meta(key) or value

    @translate_errors
    def put_meta(self, key: str, value: str) -> None:
        self._client.hset(self.keys.meta, key, value)

    @translate_errors
    def list_meta(self, prefix: str) -> dict[str, str]:
        found = cast(dict[bytes, bytes], self._client.hgetall(self.keys.meta))
        pairs = ((k.decode(), v.decode()) for k, v in found.items())
        return {k: v for k, v in pairs if k.startswith(prefix)}

    @translate_errors
    def delete_meta(self, key: str) -> None:
        self._client.hdel(self.keys.meta, key)
