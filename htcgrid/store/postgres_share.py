"""The claim of the PostgreSQL task store, shared fairly between owners
(``htcgrid.store.share``).

Pending tasks are indexed by ``(tenant, priority DESC, seq)`` (migration 10; ``tenant`` is the
session's owner, copied onto each task). A claim first tries the plain claim, one statement as
before, made to take nothing unless the pending tasks have one owner without a quota (two
probes of that index, evaluated once). When it gets nothing it looks, in one more round trip,
for the owners with pending tasks (a recursive skip scan of the index) and their running tasks
(one ``GROUP BY`` over the processing tasks), then splits the batch by the rule: one statement
per round claims every owner's part, each ``FOR UPDATE SKIP LOCKED``. Claimers racing each
other read running counts a moment apart, so the split is fair up to what they claim in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from htcgrid.models import Lease
from htcgrid.store.postgres_sql import CLAIM, NO_FLUSH
from htcgrid.store.rows import LEASE_COLUMNS, lease_from_row
from htcgrid.store.share import MetaShares, fair_claim

FIRST = "(SELECT f.tenant FROM tasks f WHERE f.state = 'pending' ORDER BY f.tenant LIMIT 1)"
ALONE = (
    f"AND tenant = {FIRST} AND (SELECT s.tenant FROM tasks s WHERE s.state = 'pending' "
    f"AND s.tenant > {FIRST} ORDER BY s.tenant LIMIT 1) IS NULL "
    "AND NOT tenant = ANY(%(quota_owners)s::text[])"
)
FUNCTIONS = "AND function = ANY(%(functions)s::text[])"

OWNERS = """
WITH RECURSIVE o(tenant) AS (
    (SELECT tenant FROM tasks WHERE state = 'pending' ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT t.tenant FROM tasks t WHERE t.state = 'pending' AND t.tenant > o.tenant
            ORDER BY t.tenant LIMIT 1)
    FROM o WHERE o.tenant IS NOT NULL
), running AS (
    SELECT tenant, count(*) AS n FROM tasks WHERE state = 'processing' GROUP BY tenant
)
SELECT o.tenant, coalesce(r.n, 0) FROM o LEFT JOIN running r USING (tenant)
WHERE o.tenant IS NOT NULL LIMIT 10000
"""

CLAIM_ROUND = f"""
UPDATE tasks
SET state = 'processing', attempt = attempt + 1, owner = %(agent)s,
    lease_expires_at = %(expires)s, started_at = %(now)s
WHERE {NO_FLUSH} AND ctid = ANY(ARRAY(
    SELECT c.ctid FROM unnest(%(tenants)s::text[], %(limits)s::int[]) AS p(tenant, n)
    CROSS JOIN LATERAL (
        SELECT ctid FROM tasks
        WHERE state = 'pending' AND tenant = p.tenant {{filter}}
        ORDER BY priority DESC, seq
        LIMIT p.n
        FOR UPDATE SKIP LOCKED
    ) c
))
RETURNING {LEASE_COLUMNS}, tenant
"""


class PostgresShare(MetaShares):
    if TYPE_CHECKING:

        def _rows(self, query: str, params: Any = None) -> list[Any]: ...

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
        only = "" if functions is None else FUNCTIONS
        shares = self._shares().shares(now)
        params: dict[str, Any] = {
            "agent": agent_id,
            "expires": now + lease_seconds,
            "now": now,
            "functions": list(functions or []),
            "limit": max_tasks,
            "quota_owners": [o for o, s in shares.items() if s.max_running is not None],
        }
        # the plain claim first, unless the last claim here found several owners waiting
        crowded = getattr(self, "_crowded", False)
        rows = [] if crowded else self._rows(CLAIM.format(filter=f"{ALONE} {only}"), params)
        if not rows:
            found = {str(owner): int(n) for owner, n in self._rows(OWNERS)}
            self._crowded = len(found) > 1
            sql = CLAIM_ROUND.format(filter=only)

            def take(plan: dict[str, int]) -> Mapping[str, int]:
                got = self._rows(sql, {**params, "tenants": list(plan), "limits": [*plan.values()]})
                rows.extend(got)
                counts: dict[str, int] = {}
                for row in got:
                    counts[row[-1]] = counts.get(row[-1], 0) + 1
                return counts

            fair_claim(max_tasks, list(found), found, shares, take)
        rows.sort(key=lambda r: (-r[10], r[11]))
        return [lease_from_row(r) for r in rows]
