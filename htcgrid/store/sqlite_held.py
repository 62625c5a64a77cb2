"""Held tasks and cancels of the SQLite task store: ``release``, ``fail_held``, ``cancel_tasks``
and ``cancel_session``.

A held task is stored in state ``held`` (``rows.HELD``), which every reader reports as pending
and which the claim's partial index of pending tasks leaves out. Releasing sets it ``pending``
in place, so it takes its original queue place (priority, then ``seq``). A batch of indexes is
read through the ``(session_id, idx)`` index, so its cost follows the batch, not the session.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from htcgrid.errors import NotFound
from htcgrid.models import CancelCounts, ErrorInfo
from htcgrid.store.rows import state_of
from htcgrid.store.sqlite_wake import DONE, WORK, WakeBoard

LIVE = "('held', 'pending', 'processing')"
NAMED = (
    "INDEXED BY tasks_by_session WHERE session_id = ? AND idx IN (SELECT value FROM json_each(?))"
)


def _named(indexes: Sequence[int]) -> str:
    return json.dumps(sorted({int(i) for i in indexes}))


class SQLiteHeld:
    wakes: WakeBoard

    if TYPE_CHECKING:  # SQLiteFile's, after this class in the store's bases

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def release(self, session_id: str, indexes: Sequence[int], now: float) -> list[int]:
        with self._write() as db:
            rows = db.execute(
                f"UPDATE tasks SET state = 'pending' WHERE seq IN (SELECT seq FROM tasks {NAMED} "
                "AND state = 'held') RETURNING idx",
                (session_id, _named(indexes)),
            ).fetchall()
        if rows:
            self.wakes.notify(WORK)
        return sorted(int(i) for (i,) in rows)

    def fail_held(
        self, session_id: str, failures: Sequence[tuple[int, ErrorInfo]], now: float
    ) -> list[int]:
        errors = dict(failures)
        with self._write() as db:
            base = _done_count(db, session_id)
            if base is None:
                return []
            chosen = [
                int(i)
                for (i,) in db.execute(
                    f"SELECT idx FROM tasks {NAMED} AND state = 'held' ORDER BY idx",
                    (session_id, _named(list(errors))),
                )
            ]
            db.executemany(
                "UPDATE tasks SET state = 'failed', error = ?, finished_at = ?, done_seq = ? "
                "WHERE session_id = ? AND idx = ?",
                [
                    (errors[i].to_json(), now, base + n, session_id, i)
                    for n, i in enumerate(chosen, 1)
                ],
            )
            _count_done(db, session_id, len(chosen))
        if chosen:
            self.wakes.notify(DONE)
        return chosen

    def cancel_session(self, session_id: str, now: float) -> CancelCounts:
        chosen = "WHERE session_id = ?"
        return self._cancel(session_id, now, chosen, (session_id,), whole=True)

    def cancel_tasks(self, session_id: str, indexes: Sequence[int], now: float) -> CancelCounts:
        return self._cancel(session_id, now, NAMED, (session_id, _named(indexes)), whole=False)

    def _cancel(
        self, session_id: str, now: float, where: str, args: tuple[object, ...], whole: bool
    ) -> CancelCounts:
        chosen = f"FROM tasks {where} AND state IN {LIVE}"
        with self._write() as db:
            base = _done_count(db, session_id)
            if base is None:
                raise NotFound(f"no session {session_id}")
            counts = dict(_states(db.execute(f"SELECT state, count(*) {chosen} GROUP BY 1", args)))
            db.execute(
                f"WITH c AS (SELECT seq, row_number() OVER (ORDER BY idx) AS n {chosen}) "
                "UPDATE tasks SET state = 'cancelled', owner = NULL, lease_expires_at = NULL, "
                f"finished_at = ?, done_seq = {base} + c.n FROM c WHERE tasks.seq = c.seq",
                (*args, now),
            )
            _count_done(db, session_id, sum(counts.values()))
            if whole:
                db.execute("UPDATE sessions SET cancelled = 1 WHERE id = ?", (session_id,))
        self.wakes.notify(DONE)
        return CancelCounts(counts.get("pending", 0), counts.get("processing", 0))


def _states(rows: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """``(state, count)`` rows with held tasks counted as pending."""
    merged: dict[str, int] = {}
    for state, n in rows:
        key = state_of(state).value
        merged[key] = merged.get(key, 0) + n
    return iter(merged.items())


def _done_count(db: sqlite3.Connection, session_id: str) -> int | None:
    row = db.execute("SELECT done_count FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return None if row is None else int(row[0])


def _count_done(db: sqlite3.Connection, session_id: str, n: int) -> None:
    if n:
        db.execute("UPDATE sessions SET done_count = done_count + ? WHERE id = ?", (n, session_id))
