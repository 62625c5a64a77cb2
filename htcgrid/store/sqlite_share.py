"""The claim of the SQLite task store, shared fairly between owners (``htcgrid.store.share``).

Pending tasks are indexed by ``(tenant, priority DESC, seq)`` (``tenant`` is the session's
owner, copied onto each task). A claim first finds the owners with pending tasks by probing
that index (one probe per owner, plus one): with one owner and no quota it claims as it
always did, with ``tenant = ?`` in the query. With more, it counts their running tasks (one
``GROUP BY`` over the processing tasks, which the lease index holds) and splits the batch by
the rule, one ``UPDATE … RETURNING`` per owner, all in the claim's one write transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from htcgrid.models import Lease
from htcgrid.store.rows import LEASE_COLUMNS, lease_from_row
from htcgrid.store.share import MetaShares, fair_claim, one_by_one

# The pending tasks through their index (without ``INDEXED BY`` the planner prefers a scan
# of the covering ``tasks_by_state`` for a plain "any pending?", which reads every task).
QUEUE = "tasks INDEXED BY tasks_queue_by_tenant"
FIRST_OWNER = "SELECT tenant FROM tasks WHERE state = 'pending' ORDER BY tenant LIMIT 1"
NEXT_OWNER = (
    "SELECT tenant FROM tasks WHERE state = 'pending' AND tenant > ? ORDER BY tenant LIMIT 1"
)
MAX_OWNERS = 10_000


class SQLiteShare(MetaShares):
    if TYPE_CHECKING:

        @contextmanager
        def _write(self) -> Iterator[sqlite3.Connection]: ...

    def claim(
        self,
        agent_id: str,
        max_tasks: int,
        lease_seconds: float,
        now: float,
        functions: Sequence[str] | None = None,
    ) -> list[Lease]:
        if max_tasks <= 0:
            return []
        where, args = self._function_filter(functions)
        sql = (
            "UPDATE tasks SET state = 'processing', attempt = attempt + 1, owner = ?, "
            "lease_expires_at = ?, started_at = ? WHERE seq IN (SELECT seq FROM tasks "
            f"WHERE state = 'pending' AND tenant = ? {where} ORDER BY priority DESC, seq "
            f"LIMIT ?) RETURNING {LEASE_COLUMNS}"
        )
        rows: list[Any] = []
        book = self._shares()
        with self._write() as db:

            def take(owner: str, n: int) -> int:
                params = (agent_id, now + lease_seconds, now, owner, *args, n)
                got = db.execute(sql, params).fetchall()
                rows.extend(got)
                return len(got)

            owners = _pending_owners(db)
            if book.plain(owners, now):
                take(owners[0], max_tasks)
            elif owners:
                running = _running(db)
                fair_claim(max_tasks, owners, running, book.shares(now), one_by_one(take))
        rows.sort(key=lambda r: (-r[10], r[11]))
        return [lease_from_row(r) for r in rows]

    @staticmethod
    def _function_filter(functions: Sequence[str] | None) -> tuple[str, list[str]]:
        if functions is None:
            return "", []
        marks = ",".join("?" * len(functions)) or "NULL"
        return f"AND function IN ({marks})", list(functions)


def _pending_owners(db: sqlite3.Connection) -> list[str]:
    """The owners with pending tasks, one index probe each (the queue's leading column)."""
    owners: list[str] = []
    row = db.execute(FIRST_OWNER).fetchone()
    while row is not None and len(owners) < MAX_OWNERS:
        owners.append(str(row[0]))
        row = db.execute(NEXT_OWNER, (owners[-1],)).fetchone()
    return owners


def _running(db: sqlite3.Connection) -> dict[str, int]:
    rows = db.execute(
        "SELECT tenant, count(*) FROM tasks WHERE state = 'processing' GROUP BY tenant"
    )
    return {str(owner): int(n) for owner, n in rows}
