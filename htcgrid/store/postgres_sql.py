"""The SQL statements of the PostgreSQL task store, each one round trip for a whole batch.

Placeholders are psycopg's (``%s``, ``%(name)s``); ``{filter}`` in CLAIM is filled by the store.
"""

from __future__ import annotations

from htcgrid.store.rows import NEW_TASK_COLUMNS, SESSION_COLUMNS

INSERT_SESSION = f"""
INSERT INTO sessions ({SESSION_COLUMNS})
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, false, 0, %s, %s, %s)
ON CONFLICT (id) DO NOTHING RETURNING true
"""
COPY_TASKS = f"COPY tasks ({NEW_TASK_COLUMNS}) FROM STDIN"

# Claims and lease extensions commit without waiting for the WAL to reach the disk (an
# fdatasync per commit, milliseconds): a database crash that loses one only sends its task
# round again, and the late result of that attempt is refused. Submits and outcomes wait.
NO_FLUSH = "(SELECT set_config('synchronous_commit', 'off', true)) = 'off'"

# The row versions locked by SKIP LOCKED cannot move before this statement ends, so their
# ctids address them directly (a TID scan, whatever the size of the table).
CLAIM = f"""
UPDATE tasks
SET state = 'processing', attempt = attempt + 1, owner = %(agent)s,
    lease_expires_at = %(expires)s, started_at = %(now)s
WHERE {NO_FLUSH} AND ctid = ANY(ARRAY(
    SELECT ctid FROM tasks
    WHERE state = 'pending' {{filter}}
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING session_id, idx, attempt, max_attempts, timeout_seconds, function, retry_on_error,
          lease_expires_at, payload, payload_ref, priority, seq, submitted_at
"""

HEARTBEAT = f"""
WITH req AS (
    SELECT * FROM unnest(%(sessions)s::text[], %(idxs)s::int[], %(attempts)s::int[])
        AS r(session_id, idx, attempt)
), mine AS MATERIALIZED (
    -- primary-key lookups, as in APPLY
    SELECT r.session_id, r.idx FROM (SELECT * FROM req ORDER BY session_id, idx) r
    CROSS JOIN LATERAL (
        SELECT 1 FROM tasks t
        WHERE t.session_id = r.session_id AND t.idx = r.idx
          AND t.state = 'processing' AND t.owner = %(agent)s AND t.attempt = r.attempt
        FOR UPDATE OF t
    ) owned
), extended AS (
    UPDATE tasks t SET lease_expires_at = %(expires)s FROM mine
    WHERE {NO_FLUSH} AND t.session_id = mine.session_id AND t.idx = mine.idx
    RETURNING t.session_id, t.idx
)
SELECT r.session_id, r.idx, e.idx IS NOT NULL, CASE WHEN e.idx IS NULL THEN (
    SELECT t.state FROM tasks t WHERE t.session_id = r.session_id AND t.idx = r.idx) END
FROM req r LEFT JOIN extended e USING (session_id, idx)
"""

# Records outcomes of tasks still processing under the given attempt (and agent, unless NULL:
# the TTL checker, which has locked them already). Terminal outcomes take the next numbers of
# their session, in request order; a NULL log keeps the task's log.
APPLY = """
WITH req AS (
    SELECT * FROM unnest(
        %(sessions)s::text[], %(idxs)s::int[], %(attempts)s::int[], %(states)s::text[],
        %(outputs)s::bytea[], %(output_refs)s::text[], %(errors)s::text[], %(logs)s::text[],
        %(releases)s::bool[], %(evidences)s::text[], %(cached)s::bool[]
    ) WITH ORDINALITY AS r(
        session_id, idx, attempt, state, output, output_ref, error, log, released, evidence,
        cached, ord)
), hit AS MATERIALIZED (
    -- one primary-key lookup per outcome, whatever the planner believes of the table: a join
    -- would scan every processing task of the grid when statistics are stale
    SELECT r.* FROM (SELECT * FROM req ORDER BY session_id, idx) r
    CROSS JOIN LATERAL (
        SELECT 1 FROM tasks t
        WHERE t.session_id = r.session_id AND t.idx = r.idx
          AND t.state = 'processing' AND t.attempt = r.attempt
          AND (%(agent)s::text IS NULL OR t.owner = %(agent)s)
        FOR UPDATE OF t
    ) owned
), finished AS (
    SELECT session_id, count(*) AS k FROM hit WHERE state <> 'pending' GROUP BY session_id
), counters AS MATERIALIZED (
    SELECT s.id FROM sessions s JOIN finished f ON f.session_id = s.id
    ORDER BY s.id
    FOR UPDATE OF s
), bumped AS (
    UPDATE sessions s SET done_count = s.done_count + f.k
    FROM finished f JOIN counters c ON c.id = f.session_id
    WHERE s.id = f.session_id
    RETURNING s.id, s.done_count - f.k AS base
), numbered AS (
    SELECT h.*, b.base + row_number() OVER (
        PARTITION BY h.session_id, h.state = 'pending' ORDER BY h.ord) AS done_seq
    FROM hit h LEFT JOIN bumped b ON b.id = h.session_id AND h.state <> 'pending'
), applied AS (
    UPDATE tasks t
    SET state = n.state, owner = NULL, lease_expires_at = NULL, output = n.output,
        output_ref = n.output_ref, error = n.error, log = coalesce(n.log, t.log),
        evidence = coalesce(n.evidence, t.evidence), cached = n.cached,
        done_seq = n.done_seq, attempt = t.attempt - n.released::int,
        finished_at = CASE WHEN n.state = 'pending' THEN NULL ELSE %(now)s END
    FROM numbered n
    WHERE t.session_id = n.session_id AND t.idx = n.idx
    RETURNING n.ord, n.session_id, n.state
)
-- PostgreSQL delivers repeated (channel, payload) pairs of one transaction only once
SELECT ord, pg_notify(
    CASE WHEN state = 'pending' THEN %(tasks_channel)s ELSE %(sessions_channel)s END,
    CASE WHEN state = 'pending' THEN '' ELSE session_id END)
FROM applied
"""

LOCK_EXPIRED = """
SELECT session_id, idx, attempt, max_attempts FROM tasks
WHERE state = 'processing' AND lease_expires_at < %s
ORDER BY lease_expires_at
LIMIT %s
FOR UPDATE SKIP LOCKED
"""

# Failed tasks back to the queue as new (their seq keeps their queue place); tasks are locked
# before their session, in the order APPLY takes them.
RETRY = """
WITH chosen AS MATERIALIZED (
    SELECT idx FROM tasks
    WHERE session_id = %(session)s AND state = 'failed'
      AND (%(every)s OR idx = ANY(%(idxs)s::int[]))
    ORDER BY session_id, idx
    FOR UPDATE
), reopened AS (
    UPDATE tasks t
    SET state = 'pending', attempt = 0, output = NULL, output_ref = NULL, error = NULL,
        log = NULL, done_seq = NULL, started_at = NULL, finished_at = NULL
    FROM chosen c WHERE t.session_id = %(session)s AND t.idx = c.idx
    RETURNING t.idx
), counted AS (
    UPDATE sessions SET retried = retried + (SELECT count(*) FROM reopened)
    WHERE id = %(session)s
    RETURNING id
)
SELECT (SELECT count(*) FROM counted), (SELECT array_agg(idx ORDER BY idx) FROM reopened),
       pg_notify(%(tasks_channel)s, ''), pg_notify(%(sessions_channel)s, %(session)s)
"""

DELETE_SESSION = """
WITH doomed AS MATERIALIZED (
    SELECT idx FROM tasks WHERE session_id = %(session)s ORDER BY session_id, idx FOR UPDATE
), tasks_gone AS (
    DELETE FROM tasks t USING doomed d WHERE t.session_id = %(session)s AND t.idx = d.idx
)
DELETE FROM sessions WHERE id = %(session)s
RETURNING pg_notify(%(channel)s, id)  -- its waiters learn at once that it is gone
"""

PURGEABLE = """
SELECT s.id FROM (
    SELECT *, coalesce(%(now)s::float8 - retention_seconds, %(before)s) AS cutoff FROM sessions
) s
WHERE s.created_at < s.cutoff AND s.done_count - s.retried >= s.task_count AND NOT EXISTS (
    SELECT 1 FROM tasks t
    WHERE t.session_id = s.id AND (t.finished_at IS NULL OR t.finished_at >= s.cutoff)
)
ORDER BY s.created_at LIMIT %(limit)s
"""
"""Complete sessions whose every task ended before ``before``, oldest first."""
