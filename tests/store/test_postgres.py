"""What the PostgreSQL task store promises beyond the shared contract: migrations,
notifications, schema isolation, redaction, and completion numbers under concurrency."""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import backend_url

if not os.environ.get("CI"):  # CI must run every backend: there, a missing driver fails
    pytest.importorskip("psycopg")

import psycopg

from htcgrid.errors import (
    BackendUnavailable,
    ConfigurationError,
    StorageFull,
    ValidationError,
)
from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store.postgres import PostgresTaskStore
from htcgrid.store.postgres_migrations import MIGRATIONS, parse_url, upgrade

NOW = 1_000_000.0
LEASE = 10.0
ALL_VERSIONS = list(range(1, len(MIGRATIONS) + 1))


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with backend_url("postgresql", tmp_path) as u:
        yield u


@pytest.fixture
def store(url: str) -> Iterator[PostgresTaskStore]:
    s = PostgresTaskStore(url)
    yield s
    s.close()


def submit(store: PostgresTaskStore, sid: str, n: int = 1, content: str = "h") -> None:
    spec = SessionSpec(sid, n, content_hash=content)
    assert store.create_session(spec, [NewTask(i, 0, b"0") for i in range(n)], NOW)


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    """Run ``query`` in the URL's schema, behind the store's back."""
    with psycopg.connect(parse_url(url).conninfo, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- migrations --------------------------------------------------------------------------


def test_migrations_are_recorded_and_idempotent(url: str) -> None:
    assert upgrade(url) == ALL_VERSIONS
    assert upgrade(url) == []
    recorded = sql(url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [v for (v,) in recorded] == ALL_VERSIONS
    PostgresTaskStore(url).close()  # a store on a migrated schema applies nothing more
    assert len(sql(url, "SELECT version FROM schema_migrations")) == len(MIGRATIONS)


def test_concurrent_upgrades_apply_each_migration_once(url: str) -> None:
    barrier = threading.Barrier(4)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(upgrade(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [[], [], [], ALL_VERSIONS]


def test_a_schema_from_a_newer_htcgrid_is_refused(url: str) -> None:
    upgrade(url)
    sql(url, f"INSERT INTO schema_migrations (version) VALUES ({len(MIGRATIONS) + 1})")
    with pytest.raises(ConfigurationError, match="newer"):
        upgrade(url)


# ---- URLs, schemas, errors ---------------------------------------------------------------


def test_the_schema_option_isolates_two_stores(tmp_path: Path) -> None:
    with backend_url("postgresql", tmp_path) as url_a, backend_url("postgresql", tmp_path) as url_b:
        a, b = PostgresTaskStore(url_a), PostgresTaskStore(url_b)
        try:
            submit(a, "s1", n=2, content="a")
            submit(b, "s1", n=1, content="b")  # same id, other schema: no Conflict
            assert a.queue_depth() == 2 and b.queue_depth() == 1
            assert len(a.claim("agent", 10, LEASE, NOW)) == 2
            assert b.queue_depth() == 1
            assert b.wait_for_tasks(0.01) is True and a.wait_for_tasks(0.01) is False
        finally:
            a.close()
            b.close()


def test_htcgrid_options_do_not_reach_libpq() -> None:
    target = parse_url(
        "postgresql://u:pw@db.example:6543/grid?schema=g1&pool_max=3&sslmode=disable"
    )
    assert (target.schema, target.pool_max) == ("g1", 3)
    assert "sslmode=disable" in target.conninfo and "pool_max" not in target.conninfo
    assert "search_path=g1" in target.conninfo and parse_url("postgresql://h/d").schema == "htcgrid"
    with pytest.raises(ConfigurationError):
        parse_url("postgresql://h/d?schema=bad;name")


def test_the_password_never_shows(url: str) -> None:
    secret = "s3cret-pw"
    with_password = url.replace("postgresql://postgres@", f"postgresql://postgres:{secret}@")
    assert secret in with_password
    store = PostgresTaskStore(with_password)  # the loopback server trusts us: it is ignored
    try:
        assert secret not in repr(store) and "***" in repr(store)
        assert store.url == with_password  # other processes must be able to reconnect
    finally:
        store.close()
    assert secret not in repr(parse_url(with_password))
    gone = f"postgresql://postgres:{secret}@127.0.0.1:{closed_port()}/test?schema=x"
    with pytest.raises(BackendUnavailable) as unavailable:
        PostgresTaskStore(gone)
    assert secret not in str(unavailable.value) and "***" in str(unavailable.value)
    with pytest.raises(ConfigurationError) as bad:
        parse_url(f"postgresql://postgres:{secret}@[::1/test")
    assert secret not in str(bad.value)


def test_a_dropped_connection_is_backend_unavailable_then_recovers(tmp_path: Path) -> None:
    app = f"htcgrid-test-{uuid.uuid4().hex[:8]}"
    with backend_url("postgresql", tmp_path) as url:
        store = PostgresTaskStore(f"{url}&application_name={app}&pool_max=1")
        try:
            submit(store, "s1")
            sql(
                url,
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = '{app}'",
            )
            with pytest.raises(BackendUnavailable):
                store.queue_depth()
            assert store.queue_depth() == 1
        finally:
            store.close()


def test_a_full_disk_on_the_server_is_storage_full(store: PostgresTaskStore) -> None:
    full = "DO $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
    with pytest.raises(StorageFull, match="out of disk space"), store._connection() as conn:
        conn.execute(full)
    assert store.queue_depth() == 0


def test_a_repeated_task_index_is_a_validation_error(store: PostgresTaskStore) -> None:
    spec = SessionSpec("dup", 2, content_hash="h")
    with pytest.raises(ValidationError):
        store.create_session(spec, [NewTask(0, 0, b"0"), NewTask(0, 0, b"1")], NOW)
    assert store.get_session("dup") is None


def test_a_task_twice_in_one_batch_is_recorded_once(store: PostgresTaskStore) -> None:
    submit(store, "s1", n=2)
    a, b = store.claim("agent", 2, LEASE, NOW)
    outcomes = [
        Outcome(t, 1, TaskState.FINISHED, output=o)
        for t, o in [(a.task_id, b"1"), (a.task_id, b"2"), (b.task_id, b"3"), ("nonsense", b"")]
    ]
    assert store.complete("agent", outcomes, NOW) == [True, False, True, False]
    assert [(r.cursor, r.output) for r in store.results("s1")] == [(1, b"1"), (2, b"3")]


# ---- waiting -----------------------------------------------------------------------------


def wake_latency(wait: Callable[[], bool], act: Callable[[], object]) -> float:
    """Seconds from the end of ``act`` (run 0.2 s into ``wait``) to the return of ``wait``."""
    acted: list[float] = []

    def run() -> None:
        act()
        acted.append(time.monotonic())

    timer = threading.Timer(0.2, run)
    timer.start()
    assert wait()
    woke = time.monotonic()
    timer.join()
    return woke - acted[0]


def test_a_notify_wakes_a_task_waiter_at_once(url: str) -> None:
    # the waiter would otherwise look again only after 30 s: only NOTIFY can wake it in time
    waiter, submitter = PostgresTaskStore(url, recheck_seconds=30), PostgresTaskStore(url)
    try:
        latency = wake_latency(lambda: waiter.wait_for_tasks(10), lambda: submit(submitter, "s1"))
        assert latency < 0.25
    finally:
        waiter.close()
        submitter.close()


def test_a_notify_wakes_a_session_waiter_at_once(url: str) -> None:
    waiter, agent = PostgresTaskStore(url, recheck_seconds=30), PostgresTaskStore(url)
    try:
        submit(agent, "s1")
        (lease,) = agent.claim("agent", 1, LEASE, NOW)
        done = Outcome(lease.task_id, 1, TaskState.FINISHED, output=b"1")
        latency = wake_latency(
            lambda: waiter.wait_for_session("s1", 0, 10) == 1,
            lambda: agent.complete("agent", [done], NOW),
        )
        assert latency < 0.25
    finally:
        waiter.close()
        agent.close()


def test_waiters_recheck_without_any_notification(url: str) -> None:
    store = PostgresTaskStore(url, recheck_seconds=0.05)
    try:
        insert = (
            "INSERT INTO tasks (session_id, idx, function, priority, state, max_attempts, "
            "timeout_seconds, retry_on_error, submitted_at) "
            "VALUES ('quiet', 0, 'default', 0, 'pending', 1, 1, false, 0)"
        )
        threading.Timer(0.1, lambda: sql(url, insert)).start()
        started = time.monotonic()
        assert store.wait_for_tasks(5) is True
        assert time.monotonic() - started < 1.0
    finally:
        store.close()


def test_close_stops_the_listener(url: str) -> None:
    def listeners() -> int:
        return sum(t.name == "htcgrid-pg-listener" and t.is_alive() for t in threading.enumerate())

    before = listeners()
    store = PostgresTaskStore(url)
    assert store.wait_for_tasks(0.01) is False
    assert listeners() == before + 1
    store.close()
    assert listeners() == before


# ---- completion numbers under concurrency ----------------------------------------------------


def test_completion_numbers_stay_gap_free_under_concurrent_writers(url: str) -> None:
    """Agents complete (finish, fail, requeue), the TTL checker expires and a client cancels,
    all at once; a reader paging meanwhile must never see a number before its predecessor."""
    n = 400
    stores = [PostgresTaskStore(url) for _ in range(4)]
    submit(stores[0], "race", n=n)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def agent(store: PostgresTaskStore, name: str) -> None:
        rng = random.Random(name)
        while (batch := store.claim(name, rng.randint(1, 40), LEASE, NOW)) and not stop.is_set():
            kinds = [TaskState.FINISHED, TaskState.FAILED, TaskState.PENDING]
            outs = [Outcome(le.task_id, le.attempt, rng.choice(kinds)) for le in batch]
            store.complete(name, [o for o in outs if rng.random() < 0.9], NOW)

    def reader() -> None:
        while not stop.is_set() or len(seen) < count_done():
            page = stores[3].results("race", seen[-1] if seen else 0, 50)
            assert [r.cursor for r in page] == list(range(len(seen) + 1, len(seen) + len(page) + 1))
            seen.extend(r.cursor or 0 for r in page)

    def count_done() -> int:
        info = stores[3].get_session("race")
        return info.done_count if info else 0

    def guarded(fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            errors.append(exc)

    workers = [
        threading.Thread(target=guarded, args=(agent, stores[i], f"a{i}"), daemon=True)
        for i in range(3)
    ]
    workers.append(threading.Thread(target=guarded, args=(reader,), daemon=True))
    for w in workers:
        w.start()
    for _ in range(20):
        stores[3].expire_leases(NOW + LEASE + 1, limit=7)
    stores[3].cancel_session("race", NOW)
    stop.set()
    for w in workers:
        w.join(60)
    try:
        assert errors == []
        done = [r.cursor for r in stores[0].results("race", 0, 10 * n)]
        assert done == list(range(1, n + 1)) and count_done() == n
        assert seen == done
    finally:
        for s in stores:
            s.close()


def test_claims_and_lease_extensions_commit_without_waiting_for_the_disk(
    store: PostgresTaskStore, url: str
) -> None:
    """Their transaction, and only theirs, runs with synchronous_commit off: a crash that loses
    one sends its task round again. Submits and outcomes keep the server's setting."""
    from htcgrid.store.postgres_sql import CLAIM, HEARTBEAT

    submit(store, "s1")
    claim = {"limit": 1, "agent": "a1", "expires": NOW + LEASE, "now": NOW, "functions": []}
    beat = {"sessions": ["s1"], "idxs": [0], "attempts": [1], "agent": "a1", "expires": NOW}
    with psycopg.connect(parse_url(url).conninfo) as conn:  # one transaction per statement
        default = conn.execute("SHOW synchronous_commit").fetchone()
        conn.commit()
        for query, params in ((CLAIM.format(filter=""), claim), (HEARTBEAT, beat)):
            assert len(conn.execute(query, params).fetchall()) == 1
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
            conn.commit()
            assert conn.execute("SHOW synchronous_commit").fetchone() == default
            conn.commit()
    record = store.get_task("s1_0")
    assert record is not None and record.state is TaskState.PROCESSING and record.attempt == 1
