"""The claim of the PostgreSQL task store, shared fairly between owners
(``htcgrid.store.share``).

Pending tasks are indexed by ``(tenant, priority DESC, seq)`` (migration 10; ``tenant`` is the
session's owner, copied onto each task). A claim first finds the owners with pending tasks in
one round trip, a recursive skip scan of that index (one probe per owner, plus one). With one
owner and no quota it claims as before, ``tenant = …`` added to the query. With more, it
counts their running tasks (one ``GROUP BY`` over the processing tasks) and splits the batch
by the rule, one ``FOR UPDATE SKIP LOCKED`` claim per owner. Claimers racing each other read
running counts a moment apart, so the split is fair up to the tasks claimed in that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from htcgrid.models import Lease
from htcgrid.store.postgres_sql import CLAIM
from htcgrid.store.rows import lease_from_row
from htcgrid.store.share import ShareBook, fair_claim

PENDING_OWNERS = """
WITH RECURSIVE o(tenant) AS (
    (SELECT tenant FROM tasks WHERE state = 'pending' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT t.tenant FROM tasks t WHERE t.state = 'pending' AND t.tenant > o.tenant
            ORDER BY t.tenant LIMIT 1)
    FROM o WHERE o.tenant IS NOT NULL
)
SELECT tenant FROM o WHERE tenant IS NOT NULL LIMIT 10000
"""
RUNNING = "SELECT tenant, count(*) FROM tasks WHERE state = 'processing' GROUP BY tenant"


class PostgresShare:
    if TYPE_CHECKING:

        def _rows(self, query: str, params: Any = None) -> list[Any]: ...
        def list_meta(self, prefix: str) -> dict[str, str]: ...

    def _shares(self) -> ShareBook:
        book: ShareBook | None = getattr(self, "_share_book", None)
        if book is None:
            book = self._share_book = ShareBook(lambda: self.list_meta("share/"))
        return book

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
        where = "AND tenant = %(tenant)s"
        if functions is not None:
            where += " AND function = ANY(%(functions)s::text[])"
        sql = CLAIM.format(filter=where)
        params = {
            "agent": agent_id,
            "expires": now + lease_seconds,
            "now": now,
            "functions": list(functions or []),
        }
        rows: list[Any] = []

        def take(owner: str, n: int) -> int:
            got = self._rows(sql, {**params, "tenant": owner, "limit": n})
            rows.extend(got)
            return len(got)

        book = self._shares()
        owners = [str(owner) for (owner,) in self._rows(PENDING_OWNERS)]
        if book.plain(owners, now):
            take(owners[0], max_tasks)
        elif owners:
            running = {str(owner): int(n) for owner, n in self._rows(RUNNING)}
            fair_claim(max_tasks, owners, running, book.shares(now), take)
        rows.sort(key=lambda r: (-r[10], r[11]))
        return [lease_from_row(r) for r in rows]
