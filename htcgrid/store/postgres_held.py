"""Held tasks and cancels of the PostgreSQL task store: ``release``, ``fail_held``,
``cancel_tasks`` and ``cancel_session``, each one statement.

A held task is stored in state ``held`` (``rows.HELD``, allowed by migration 11), which every
reader reports as pending and which the claim's partial indexes of pending tasks leave out.
Releasing sets it ``pending`` in place, so it takes its original queue place (priority, then
``seq``). A batch of indexes is found by one primary-key lookup each, so its cost follows the
batch, not the session. Tasks are locked before their session, as every statement does.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from psycopg import Connection
from psycopg.rows import TupleRow

from htcgrid.errors import NotFound
from htcgrid.models import CancelCounts, ErrorInfo

LIVE = "state IN ('held', 'pending', 'processing')"
# Rows are picked by one primary-key lookup per index (``idxs`` sorted, so locks are taken in
# index order) and updated through the keys they return, whatever the planner believes of the
# table: with stale statistics ``idx = ANY(…)``, or a join on the session, would read every
# task of the session.
PICK = """
    SELECT t.* FROM unnest(%(idxs)s::int[]) AS n(idx)
    CROSS JOIN LATERAL (
        SELECT session_id, idx, state FROM tasks
        WHERE session_id = %(session)s AND idx = n.idx AND {states}
        FOR UPDATE
    ) t
"""
HELD_ROWS = PICK.format(states="state = 'held'")
NAMED = PICK.format(states=LIVE)
WHOLE = f"""
    SELECT session_id, idx, state FROM tasks WHERE session_id = %(session)s AND {LIVE}
    ORDER BY session_id, idx
    FOR UPDATE
"""

RELEASE = f"""
WITH chosen AS MATERIALIZED ({HELD_ROWS})
UPDATE tasks t SET state = 'pending'
FROM chosen c WHERE t.session_id = c.session_id AND t.idx = c.idx
RETURNING t.idx
"""

FAIL_HELD = f"""
WITH chosen AS MATERIALIZED ({HELD_ROWS}), bumped AS (
    UPDATE sessions SET done_count = done_count + (SELECT count(*) FROM chosen)
    WHERE id = %(session)s
    RETURNING done_count - (SELECT count(*) FROM chosen) AS base
), errors AS (
    SELECT * FROM unnest(%(idxs)s::int[], %(errors)s::text[]) AS e(idx, error)
)
UPDATE tasks t
SET state = 'failed', error = o.error, finished_at = %(now)s, done_seq = b.base + o.rank
FROM (
    SELECT c.session_id, c.idx, e.error, row_number() OVER (ORDER BY c.idx) AS rank
    FROM chosen c JOIN errors e ON e.idx = c.idx
) o, bumped b
WHERE t.session_id = o.session_id AND t.idx = o.idx
RETURNING t.idx
"""

# {open}: ``WHOLE`` for the whole session, ``NAMED`` for some of its tasks
CANCEL = """
WITH open AS MATERIALIZED ({open}), bumped AS (
    UPDATE sessions SET done_count = done_count + (SELECT count(*) FROM open),
        cancelled = cancelled OR %(whole)s
    WHERE id = %(session)s
    RETURNING done_count - (SELECT count(*) FROM open) AS base
), cancelled AS (
    UPDATE tasks t
    SET state = 'cancelled', owner = NULL, lease_expires_at = NULL, finished_at = %(now)s,
        done_seq = b.base + o.rank
    FROM (
        SELECT session_id, idx, row_number() OVER (ORDER BY idx) AS rank FROM open
    ) o, bumped b
    WHERE t.session_id = o.session_id AND t.idx = o.idx
)
SELECT (SELECT count(*) FROM bumped),
       (SELECT count(*) FROM open WHERE state <> 'processing'),
       (SELECT count(*) FROM open WHERE state = 'processing'),
       pg_notify(%(channel)s, %(session)s)
"""


def _named(indexes: Sequence[int]) -> list[int]:
    """Distinct indexes a task can have (others name nothing)."""
    return sorted({int(i) for i in indexes if 0 <= int(i) < 2**31})


class PostgresHeld:
    _tasks_channel: str
    _sessions_channel: str

    if TYPE_CHECKING:  # PostgresTaskStore's

        def _transaction(self) -> AbstractContextManager[Connection[TupleRow]]: ...

        def _row(self, query: str, params: Any = None) -> TupleRow | None: ...

    def _changed(self, query: str, params: dict[str, Any], channel: str, key: str) -> list[int]:
        with self._transaction() as conn:
            done = sorted(int(i) for (i,) in conn.execute(query, params).fetchall())
            if done:  # delivered at commit
                conn.execute("SELECT pg_notify(%s, %s)", (channel, key))
        return done

    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        params = {"session": session_id, "idxs": _named(indexes)}
        return self._changed(RELEASE, params, self._tasks_channel, "")

    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        named = [(i, e) for i, e in failures if 0 <= i < 2**31]
        errors = dict(sorted(named, key=lambda pair: pair[0]))  # locks taken in index order
        params = {
            "session": session_id,
            "idxs": list(errors),
            "errors": [e.to_json() for e in errors.values()],
            "now": now,
        }
        return self._changed(FAIL_HELD, params, self._sessions_channel, session_id)

    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        return self._cancel(CANCEL.format(open=WHOLE), {"session": session_id, "whole": True}, now)

    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        params = {"session": session_id, "whole": False, "idxs": _named(indexes)}
        return self._cancel(CANCEL.format(open=NAMED), params, now)

    def _cancel(self, query: str, params: dict[str, Any], now: float) -> CancelCounts:
        row = self._row(query, {**params, "now": now, "channel": self._sessions_channel})
        if row is None or not row[0]:
            raise NotFound(f"no session {params['session']}")
        return CancelCounts(pending=row[1], processing=row[2])
