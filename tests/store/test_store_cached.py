"""Memoization on every backend: a session's ``cache_seconds`` is stored with it, a task's
``cached`` flag with its outcome (fenced by attempt like any result), and the memo records
(``htcgrid.memo``) give an answer only while its task is finished in its own session, and
leave nothing behind once that session is forgotten."""

from __future__ import annotations

from test_store_contract import LEASE, NOW, finish, make_session

from htcgrid import memo
from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store import TaskStore


def cache_session(store: TaskStore, sid: str, owner: str = "alice", n: int = 2) -> SessionSpec:
    spec = SessionSpec(
        id=sid, task_count=n, owner=owner, content_hash="h", cache_seconds=3600.0, created_at=NOW
    )
    tasks = [NewTask(i, 0, payload=b'{"x":%d}' % i) for i in range(n)]
    assert store.create_session(spec, tasks, NOW)
    return spec


def test_the_cache_option_is_stored_with_the_session(store: TaskStore) -> None:
    cache_session(store, "c1")
    make_session(store, "plain")
    cached, plain = store.get_session("c1"), store.get_session("plain")
    assert cached is not None and cached.spec.cache_seconds == 3600.0
    assert plain is not None and plain.spec.cache_seconds is None
    listed = {s.id: s.spec.cache_seconds for s in store.list_sessions()}
    assert listed == {"c1": 3600.0, "plain": None}


def test_a_cached_outcome_is_stored_and_fenced_by_its_attempt(store: TaskStore) -> None:
    cache_session(store, "c1")
    first, second = store.claim("a1", 2, LEASE, NOW)
    answer = Outcome(first.task_id, first.attempt, TaskState.FINISHED, output=b"7", cached=True)
    stale = Outcome(second.task_id, second.attempt + 1, TaskState.FINISHED, cached=True)
    assert store.complete("a1", [answer, stale], NOW) == [True, False]
    assert store.complete("a1", [finish(second.task_id, second.attempt, b"8")], NOW) == [True]

    record = store.get_task(first.task_id)
    assert record is not None and record.cached and record.output == b"7"
    assert record.state is TaskState.FINISHED
    ran = store.get_task(second.task_id)
    assert ran is not None and not ran.cached and ran.output == b"8"
    assert {r.task_id: r.cached for r in store.results("c1")} == {
        first.task_id: True,
        second.task_id: False,
    }


def run_all(store: TaskStore, sid: str, outputs: dict[int, bytes], now: float = NOW) -> None:
    leases = store.claim("a1", len(outputs), LEASE, now)
    done = [finish(le.task_id, le.attempt, outputs[le.index]) for le in leases]
    assert all(store.complete("a1", done, now))
    assert {le.session_id for le in leases} == {sid}


def entries(store: TaskStore, spec: SessionSpec, owner: str = "alice") -> list[memo.Entry]:
    """One answer per task of ``spec``, as the agent that ran them records them."""
    found = []
    for i in range(spec.task_count):
        task = store.get_task(f"{spec.id}_{i}")
        assert task is not None
        key = memo.memo_key(owner, "default", "1", f"d{i}")
        found.append(memo.Entry(key, task.task_id, task.submitted_at, NOW))
    return found


def test_a_recorded_answer_is_found_while_its_task_is_good(store: TaskStore) -> None:
    spec = cache_session(store, "c1")
    run_all(store, "c1", {0: b"10", 1: b"11"})
    assert memo.record(store, spec, entries(store, spec)) == 1
    key = memo.memo_key("alice", "default", "1", "d1")

    found = memo.lookup(store, key, 60.0, NOW + 60)
    assert found is not None and found.task.output == b"11" and found.computed_at == NOW
    assert memo.lookup(store, key, 60.0, NOW + 61) is None  # too old for this session
    other = memo.memo_key("bob", "default", "1", "d1")
    assert memo.lookup(store, other, 60.0, NOW) is None  # bob never sees alice's answers


def test_an_answer_whose_task_is_no_longer_finished_is_a_miss(store: TaskStore) -> None:
    spec = cache_session(store, "c1", n=1)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    failed = Outcome(lease.task_id, lease.attempt, TaskState.FAILED)
    assert store.complete("a1", [failed], NOW) == [True]
    memo.record(store, spec, entries(store, spec))  # wrongly recorded: the lookup checks
    assert memo.lookup(store, entries(store, spec)[0].key, 60.0, NOW) is None


def test_forgetting_a_session_removes_its_records_and_keeps_others(store: TaskStore) -> None:
    first = cache_session(store, "c1")
    second = cache_session(store, "c2")
    run_all(store, "c1", {0: b"1", 1: b"2"})
    run_all(store, "c2", {0: b"1", 1: b"2"})
    memo.record(store, first, entries(store, first))
    memo.record(store, first, entries(store, first)[:1], first_slot=0)  # a second batch
    assert len(store.list_meta(memo.INDEX_PREFIX)) == 2
    shared = memo.memo_key("alice", "default", "1", "d1")
    memo.record(store, second, entries(store, second)[1:])  # c2 worked d1 out since

    assert store.delete_session("c1")
    assert memo.forget(store, "c1") == 1  # d0; d1 is c2's answer now
    assert not store.list_meta("memo-of/c1/")
    assert list(store.list_meta(memo.PREFIX)) == [shared]
    assert memo.lookup(store, shared, 60.0, NOW) is not None

    assert store.delete_session("c2")
    assert memo.forget(store, "c2") == 1
    assert not store.list_meta(memo.PREFIX) and not store.list_meta(memo.INDEX_PREFIX)


def test_an_answer_recorded_after_its_session_was_deleted_is_removed(store: TaskStore) -> None:
    spec = cache_session(store, "c1", n=1)
    run_all(store, "c1", {0: b"1"})
    assert store.delete_session("c1")
    late = [memo.Entry(memo.memo_key("alice", "default", "1", "d0"), "c1_0", NOW, NOW)]
    memo.record(store, spec, late)  # an agent that recorded late
    assert not store.list_meta(memo.PREFIX) and not store.list_meta(memo.INDEX_PREFIX)


def test_a_session_id_used_again_does_not_answer_for_the_old_one(store: TaskStore) -> None:
    spec = cache_session(store, "c1", n=1)
    run_all(store, "c1", {0: b"1"})
    (entry,) = entries(store, spec)
    memo.record(store, spec, [entry])
    assert store.delete_session("c1")  # not forgotten: a record left behind by a crash
    again = SessionSpec(id="c1", task_count=1, owner="alice", content_hash="h2", created_at=NOW + 5)
    assert store.create_session(again, [NewTask(0, 0, payload=b'"other"')], NOW + 5)
    run_all(store, "c1", {0: b"2"}, NOW + 5)
    assert memo.lookup(store, entry.key, 60.0, NOW + 5) is None
