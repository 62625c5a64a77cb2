"""The PostgreSQL schema of htcgrid (task store and data plane) and how to reach it.

A URL ``postgresql://user:password@host:port/db?schema=htcgrid`` names a database and a
schema inside it; every table of both roles lives in that schema, so several grids (or test
runs) can share one database. htcgrid's own query options are taken out before the rest
goes to libpq:

| option         | default   | meaning                                         |
|----------------|-----------|-------------------------------------------------|
| ``schema``     | htcgrid   | the schema holding htcgrid's tables             |
| ``pool_min``   | 1         | connections a process keeps open                |
| ``pool_max``   | 10        | connections a process may open                  |
| ``pool_timeout``| 30       | seconds to wait for a free connection           |

The schema evolves by **versioned migrations**: ``MIGRATIONS[i]`` is version ``i + 1``, and
``schema_migrations`` records the versions applied. ``upgrade`` applies the missing ones in one
transaction under an advisory lock, so any number of servers may start at once. Migrations are
append-only: never edit one that has shipped, add the next.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from htcgrid.errors import BackendUnavailable, ConfigurationError, StorageFull
from htcgrid.urls import redact

DEFAULT_SCHEMA = "htcgrid"
SCHEMA_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
OPTIONS = ("schema", "pool_min", "pool_max", "pool_timeout")
LOCK_CLASS = 0x47524944  # "GRID": the advisory-lock namespace of htcgrid's migrations

MIGRATIONS: list[str] = [
    # 1: the task store. Tasks are keyed by (session_id, idx); ``seq`` orders the queue FIFO
    # within a priority. Partial indexes keep the queue and the lease scan small.
    """
    CREATE TABLE sessions (
        id text PRIMARY KEY,
        seq bigserial NOT NULL,
        owner text NOT NULL,
        function text NOT NULL,
        priority smallint NOT NULL,
        max_attempts integer NOT NULL,
        timeout_seconds double precision NOT NULL,
        retry_on_error boolean NOT NULL,
        task_count integer NOT NULL,
        content_hash text NOT NULL,
        created_at double precision NOT NULL,
        done_count integer NOT NULL DEFAULT 0,
        cancelled boolean NOT NULL DEFAULT false
    );
    CREATE INDEX sessions_newest ON sessions (created_at DESC, seq DESC);
    CREATE INDEX sessions_by_owner ON sessions (owner, created_at DESC, seq DESC);
    CREATE TABLE tasks (
        session_id text NOT NULL,
        idx integer NOT NULL,
        seq bigserial NOT NULL,
        function text NOT NULL,
        priority smallint NOT NULL,
        state text NOT NULL
            CHECK (state IN ('pending', 'processing', 'finished', 'failed', 'cancelled')),
        attempt integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL,
        timeout_seconds double precision NOT NULL,
        retry_on_error boolean NOT NULL,
        owner text,
        lease_expires_at double precision,
        payload bytea,
        payload_ref text,
        output bytea,
        output_ref text,
        error text,
        log text,
        done_seq integer,
        submitted_at double precision NOT NULL,
        started_at double precision,
        finished_at double precision,
        PRIMARY KEY (session_id, idx)
    );
    CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'pending';
    CREATE INDEX tasks_queue_by_function ON tasks (function, priority DESC, seq)
        WHERE state = 'pending';
    CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE state = 'processing';
    -- a second holder of one completion number would be a bug: let the database refuse it
    CREATE UNIQUE INDEX tasks_done ON tasks (session_id, done_seq) WHERE done_seq IS NOT NULL;
    """,
    # 2: the data plane. Byte-wise collation, so a key prefix is a contiguous index range.
    """
    CREATE TABLE blobs (
        key text COLLATE "C" PRIMARY KEY,
        data bytea NOT NULL
    );
    """,
    # 3: grid metadata (the grid's data-plane URL, agent presence).
    """
    CREATE TABLE meta (
        key text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
    );
    """,
    # 4: how many of a session's tasks ``retry`` sent back; done_count - retried are terminal.
    """
    ALTER TABLE sessions ADD COLUMN retried integer NOT NULL DEFAULT 0;
    """,
    # 5: a session's own retention (NULL: the server's retention_seconds).
    """
    ALTER TABLE sessions ADD COLUMN retention_seconds double precision;
    """,
    # 6: a session's own poison rule (NULL: the agents' poison_after).
    """
    ALTER TABLE sessions ADD COLUMN poison_after integer;
    """,
    # 7: a task's poison evidence, the attempts that killed their worker (JSON list; NULL: none).
    """
    ALTER TABLE tasks ADD COLUMN evidence text;
    """,
    # 8: a session's failed tasks in index order (tasks_in_state); holds failed tasks only.
    """
    CREATE INDEX tasks_failed ON tasks (session_id, idx) WHERE state = 'failed';
    """,
    # 9: memoization: a session's own answer age (NULL: it is not memoized), and whether a
    # task was answered from an earlier task's output without running.
    """
    ALTER TABLE sessions ADD COLUMN cache_seconds double precision;
    ALTER TABLE tasks ADD COLUMN cached boolean NOT NULL DEFAULT false;
    """,
    # 10: fair share between owners: each task carries its session's owner (``tenant``), and
    # the queue is indexed by owner first, so one owner's claim is one index range and the
    # owners with pending tasks are found by a skip scan (``postgres_share``).
    """
    ALTER TABLE tasks ADD COLUMN tenant text NOT NULL DEFAULT '';
    UPDATE tasks t SET tenant = s.owner FROM sessions s
        WHERE s.id = t.session_id AND t.state IN ('pending', 'processing');
    DROP INDEX tasks_queue;
    CREATE INDEX tasks_queue_by_tenant ON tasks (tenant, priority DESC, seq)
        WHERE state = 'pending';
    """,
    # 11: task graphs: a held task (state 'held', reported as pending) waits for ``release``.
    # NOT VALID: the rows already there met the narrower check, so none is scanned.
    """
    ALTER TABLE tasks DROP CONSTRAINT tasks_state_check;
    ALTER TABLE tasks ADD CONSTRAINT tasks_state_check CHECK (
        state IN ('pending', 'held', 'processing', 'finished', 'failed', 'cancelled')
    ) NOT VALID;
    """,
]


@dataclass(frozen=True)
class Target:
    """Where a ``postgresql://`` URL points: libpq's conninfo plus htcgrid's own options."""

    url: str = field(repr=False)
    conninfo: str = field(repr=False)  # search_path set to ``schema``
    schema: str
    pool_min: int = 1
    pool_max: int = 10
    pool_timeout_seconds: float = 30.0

    def __repr__(self) -> str:
        return f"Target({redact(self.url)!r}, schema={self.schema!r})"

    def scrub(self, text: str) -> str:
        """``text`` without the password, for messages that may quote the conninfo."""
        password = urlsplit(self.url).password
        return text.replace(password, "***") if password else text

    def unavailable(self, exc: Exception) -> BackendUnavailable:
        if isinstance(exc, psycopg.errors.DiskFull):  # SQLSTATE 53100
            return StorageFull(
                f"PostgreSQL at {redact(self.url)} is out of disk space: free space in the "
                "server's data directory or delete finished sessions, then retry"
            )
        return BackendUnavailable(
            f"PostgreSQL at {redact(self.url)} is unavailable: {self.scrub(str(exc)).strip()}"
        )


def parse_url(url: str) -> Target:
    """Split ``url`` into libpq's conninfo and htcgrid's options; ConfigurationError if bad."""
    libpq_url, ours = _split_options(url)
    schema = ours.get("schema", DEFAULT_SCHEMA)
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ConfigurationError(f"schema must be a plain identifier, not {schema!r}")
    try:
        params = conninfo_to_dict(libpq_url)
        pool = [int(ours.get("pool_min", 1)), int(ours.get("pool_max", 10))]
        timeout = float(ours.get("pool_timeout", 30))
    except (psycopg.ProgrammingError, ValueError) as exc:
        reason = Target(url, "", schema).scrub(str(exc))
        raise ConfigurationError(f"bad PostgreSQL URL {redact(url)}: {reason}") from None
    options = " ".join(filter(None, [str(params.pop("options", "")), f"-c search_path={schema}"]))
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "htcgrid")  # how operators spot us in pg_stat_activity
    conninfo = make_conninfo("", **params, options=options)
    return Target(url, conninfo, schema, pool[0], max(pool), timeout)


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without htcgrid's query options (scheme made libpq's), and those options."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # validates it
    except ValueError:
        # the URL cannot be parsed, so neither can its password be masked: show none of it
        raise ConfigurationError("not a valid postgresql:// URL") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    theirs = urlencode([(k, v) for k, v in pairs if k not in OPTIONS])
    ours = {k: v for k, v in pairs if k in OPTIONS}
    return urlunsplit(parts._replace(scheme="postgresql", query=theirs)), ours


@contextmanager
def reachable(target: Target) -> Iterator[None]:
    """Turn psycopg's "the server is gone" errors (a terminated connection, a restart)
    into ``BackendUnavailable``, and a full disk (SQLSTATE 53100) into ``StorageFull``."""
    try:
        yield
    except psycopg.OperationalError as exc:
        raise target.unavailable(exc) from exc


def upgrade(url: str) -> list[int]:
    """Create the schema if needed and apply the migrations it lacks; returns their versions.

    Safe to call from many processes at once (they queue on an advisory lock, and the later
    ones find nothing to do). Raises ConfigurationError when the database was migrated by a
    newer htcgrid, BackendUnavailable when the server cannot be reached.
    """
    target = parse_url(url)
    with (
        reachable(target),
        psycopg.connect(target.conninfo, autocommit=True) as conn,
        conn.transaction(),
    ):
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, target.schema))
        _prepare(conn, target.schema)
        return _apply_missing(conn, target)


def _prepare(conn: psycopg.Connection[TupleRow], schema: str) -> None:
    name = sql.Identifier(schema)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(name))
    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(name))
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )


def _apply_missing(conn: psycopg.Connection[TupleRow], target: Target) -> list[int]:
    done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    if done and max(done) > len(MIGRATIONS):
        raise ConfigurationError(
            f"schema {target.schema} is at version {max(done)}, newer than this htcgrid "
            f"({len(MIGRATIONS)}): upgrade htcgrid"
        )
    applied: list[int] = []
    for version, script in enumerate(MIGRATIONS, start=1):
        if version not in done:
            conn.execute(script)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


class Database:
    """A grid's database, as one role (task store, data plane) uses it: its migrations applied
    on opening, one pool of autocommit connections, each raising ``BackendUnavailable`` when
    the server is gone. The one place a pool is set up."""

    def __init__(self, url: str, name: str, workers: int = 1) -> None:
        self.target = parse_url(url)
        upgrade(url)
        self.pool = open_pool(self.target, name, workers)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[TupleRow]]:
        with reachable(self.target), self.pool.connection() as conn:
            yield conn

    def close(self) -> None:
        self.pool.close()


def open_pool(
    target: Target, name: str, workers: int = 1
) -> ConnectionPool[psycopg.Connection[TupleRow]]:
    """A pool of autocommit connections to ``target``, sized by its URL options."""
    return ConnectionPool(
        target.conninfo,
        min_size=target.pool_min,
        max_size=target.pool_max,
        timeout=target.pool_timeout_seconds,
        kwargs={"autocommit": True},
        num_workers=workers,
        name=f"{name}-{target.schema}",
        open=True,
    )
