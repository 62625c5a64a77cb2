"""The task store contract (design §2), run against every backend."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from pathlib import Path

import pytest
from backends import SHARED_KINDS

from htcgrid.errors import Conflict, NotFound
from htcgrid.models import (
    HeartbeatStatus,
    NewTask,
    Outcome,
    SessionSpec,
    TaskState,
    expired_reason,
    released,
    task_id,
)
from htcgrid.store import TaskStore, open_store

NOW = 1_000_000.0
LEASE = 10.0


def make_session(
    store: TaskStore,
    sid: str = "s1",
    n: int = 3,
    priority: int = 0,
    max_attempts: int = 6,
    function: str = "default",
    content: str = "h",
    now: float = NOW,
    priorities: list[int] | None = None,
) -> SessionSpec:
    spec = SessionSpec(
        id=sid,
        task_count=n,
        priority=priority,
        max_attempts=max_attempts,
        function=function,
        content_hash=content,
        owner="alice",
    )
    tasks = [
        NewTask(i, priorities[i] if priorities else priority, payload=b'{"i":%d}' % i)
        for i in range(n)
    ]
    assert store.create_session(spec, tasks, now) is True
    return spec


def finish(tid: str, attempt: int, output: bytes = b"1") -> Outcome:
    return Outcome(tid, attempt, TaskState.FINISHED, output=output)


def test_round_trip(store: TaskStore) -> None:
    make_session(store, n=3)
    info = store.get_session("s1")
    assert info is not None and info.spec.task_count == 3 and info.spec.owner == "alice"
    assert info.done_count == 0 and not info.complete
    assert store.count_states("s1")[TaskState.PENDING] == 3
    task = store.get_task(task_id("s1", 2))
    assert task is not None and task.payload == b'{"i":2}' and task.state is TaskState.PENDING
    assert store.get_task("s1_99") is None and store.get_task("nonsense") is None
    assert store.get_session("unknown") is None
    assert store.queue_depth() == 3


def test_submit_is_idempotent_and_conflicts_on_new_content(store: TaskStore) -> None:
    spec = make_session(store, n=2)
    assert store.create_session(spec, [NewTask(0, 0, b"0"), NewTask(1, 0, b"1")], NOW) is False
    assert store.queue_depth() == 2
    other = SessionSpec(id="s1", task_count=1, content_hash="different")
    with pytest.raises(Conflict):
        store.create_session(other, [NewTask(0, 0, b"0")], NOW)
    assert store.count_states("s1")[TaskState.PENDING] == 2


def test_a_session_appears_all_at_once(store: TaskStore) -> None:
    n = 3000
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            counts = store.count_states("big")
            seen.append(sum(counts.values()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    make_session(store, "big", n=n)
    stop.set()
    watcher.join()
    assert set(seen) <= {0, n}
    assert sum(store.count_states("big").values()) == n


def test_claim_leases_and_counts_attempts(store: TaskStore) -> None:
    make_session(store, n=2)
    leases = store.claim("a1", 5, LEASE, NOW)
    assert [le.task_id for le in leases] == ["s1_0", "s1_1"]
    assert all(le.attempt == 1 and le.expires_at == NOW + LEASE for le in leases)
    assert leases[0].payload == b'{"i":0}' and leases[0].max_attempts == 6
    assert all(le.submitted_at == NOW for le in leases)  # the queue wait's start, for metrics
    assert store.claim("a2", 5, LEASE, NOW) == []
    task = store.get_task("s1_0")
    assert task is not None and task.state is TaskState.PROCESSING and task.owner == "a1"
    assert store.count_states("s1")[TaskState.PROCESSING] == 2


def test_priority_order_and_fifo_within_a_priority(store: TaskStore) -> None:
    make_session(store, "low", n=2, priority=0)
    make_session(store, "high", n=2, priority=9, now=NOW + 1)
    make_session(store, "mixed", n=3, priorities=[5, 9, 0], now=NOW + 2)
    order = [store.claim("a", 1, LEASE, NOW + 3)[0].task_id for _ in range(7)]
    assert order == ["high_0", "high_1", "mixed_1", "mixed_0", "low_0", "low_1", "mixed_2"]


def test_claim_by_function(store: TaskStore) -> None:
    make_session(store, "a", n=2, function="pricing")
    make_session(store, "b", n=1, function="risk")
    assert store.queue_depth(["risk"]) == 1 and store.queue_depth() == 3
    leases = store.claim("agent", 10, LEASE, NOW, functions=["risk"])
    assert [le.task_id for le in leases] == ["b_0"] and leases[0].function == "risk"
    assert store.claim("agent", 10, LEASE, NOW, functions=["nothing"]) == []
    assert len(store.claim("agent", 10, LEASE, NOW, functions=["pricing", "risk"])) == 2


def test_claims_are_exclusive_across_threads(store: TaskStore) -> None:
    make_session(store, n=600)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while batch := store.claim(name, 7, LEASE, NOW):
            with lock:
                claimed.extend(le.task_id for le in batch)

    threads = [threading.Thread(target=claimer, args=(f"a{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 600 and len(set(claimed)) == 600


def _claim_all(url: str, name: str, out: multiprocessing.Queue[list[str]]) -> None:
    s = open_store(url)
    ids: list[str] = []
    while batch := s.claim(name, 5, LEASE, NOW):
        ids.extend(le.task_id for le in batch)
    s.close()
    out.put(ids)


def test_claims_are_exclusive_across_processes(
    store: TaskStore, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["store_url"]
    if kind not in SHARED_KINDS:
        pytest.skip("an in-process store cannot be shared between processes")
    make_session(store, n=400)
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(store.url, f"p{i}", out)) for i in range(3)]
    for p in procs:
        p.start()
    claimed = [tid for _ in procs for tid in out.get(timeout=60)]
    for p in procs:
        p.join(timeout=30)
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert len(claimed) == 400


def test_heartbeat_only_by_the_owner(store: TaskStore) -> None:
    make_session(store, n=1)
    (lease,) = store.claim("owner", 1, LEASE, NOW)
    answers = store.heartbeat("intruder", [(lease.task_id, 1)], LEASE, NOW + 5)
    assert answers == {lease.task_id: HeartbeatStatus.LOST}
    assert store.heartbeat("owner", [(lease.task_id, 2)], LEASE, NOW + 5) == {
        lease.task_id: HeartbeatStatus.LOST
    }
    task = store.get_task(lease.task_id)
    assert task is not None and task.lease_expires_at == NOW + LEASE
    assert store.heartbeat("owner", [(lease.task_id, 1)], LEASE, NOW + 5) == {
        lease.task_id: HeartbeatStatus.OK
    }
    task = store.get_task(lease.task_id)
    assert task is not None and task.lease_expires_at == NOW + 5 + LEASE
    # an extended lease does not expire at its old deadline
    assert store.expire_leases(NOW + LEASE + 1).requeued == []


def test_complete_records_exactly_one_result(store: TaskStore) -> None:
    make_session(store, n=2)
    a, b = store.claim("agent", 2, LEASE, NOW)
    error = Outcome(b.task_id, 1, TaskState.FAILED, log="boom\n")
    from htcgrid.models import ErrorInfo

    error = Outcome(
        b.task_id, 1, TaskState.FAILED, error=ErrorInfo("ValueError", "bad", "tb"), log="x"
    )
    assert store.complete("agent", [finish(a.task_id, 1, b"42"), error], NOW + 1) == [True, True]
    assert store.complete("agent", [finish(a.task_id, 1, b"43")], NOW + 2) == [False]
    done = store.get_task(a.task_id)
    assert done is not None and done.state is TaskState.FINISHED and done.output == b"42"
    failed = store.get_task(b.task_id)
    assert failed is not None and failed.state is TaskState.FAILED
    assert failed.error is not None and failed.error.type == "ValueError" and failed.log == "x"
    info = store.get_session("s1")
    assert info is not None and info.complete and info.done_count == 2


def test_a_zombie_completion_is_refused(store: TaskStore) -> None:
    make_session(store, n=1)
    (first,) = store.claim("zombie", 1, LEASE, NOW)
    assert store.expire_leases(NOW + LEASE + 1).requeued == [first.task_id]
    (second,) = store.claim("healthy", 1, LEASE, NOW + LEASE + 2)
    assert second.attempt == 2
    assert store.heartbeat("zombie", [(first.task_id, 1)], LEASE, NOW + 12) == {
        first.task_id: HeartbeatStatus.LOST
    }
    assert store.complete("zombie", [finish(first.task_id, 1, b"stale")], NOW + 13) == [False]
    assert store.complete("healthy", [finish(second.task_id, 2, b"fresh")], NOW + 14) == [True]
    (result,) = store.results("s1")
    assert result.output == b"fresh" and result.attempt == 2 and result.cursor == 1


def test_expiry_requeues_until_max_attempts_then_fails(store: TaskStore) -> None:
    make_session(store, n=1, max_attempts=3)
    now = NOW
    for attempt in (1, 2, 3):
        (lease,) = store.claim("agent", 1, LEASE, now)
        assert lease.attempt == attempt
        assert store.expire_leases(now + LEASE - 1) == type(store.expire_leases(0))()
        now += LEASE + 1
        report = store.expire_leases(now)
        if attempt < 3:
            assert report.requeued == [lease.task_id] and report.failed == []
            assert store.get_task(lease.task_id).state is TaskState.PENDING  # type: ignore[union-attr]
    assert report.failed == ["s1_0"]
    task = store.get_task("s1_0")
    assert task is not None and task.state is TaskState.FAILED and task.attempt == 3
    assert task.error is not None and task.error.message == expired_reason(3)
    assert store.claim("agent", 1, LEASE, now) == []


def test_infrastructure_failure_requeues_the_task(store: TaskStore) -> None:
    make_session(store, n=1)
    (lease,) = store.claim("agent", 1, LEASE, NOW)
    requeue = Outcome(lease.task_id, 1, TaskState.PENDING, log="worker died")
    assert store.complete("agent", [requeue], NOW + 1) == [True]
    assert store.count_states("s1")[TaskState.PENDING] == 1
    (again,) = store.claim("other", 1, LEASE, NOW + 2)
    assert again.attempt == 2
    assert store.results("s1") == []


def test_a_released_task_goes_back_without_using_an_attempt(store: TaskStore) -> None:
    make_session(store, n=2, max_attempts=1)
    first, second = store.claim("agent", 2, LEASE, NOW)
    assert store.complete("agent", [released(first), released(second)], NOW + 1) == [True, True]
    assert store.count_states("s1")[TaskState.PENDING] == 2
    again = store.claim("other", 2, LEASE, NOW + 2)
    assert [(le.task_id, le.attempt) for le in again] == [("s1_0", 1), ("s1_1", 1)]
    # the first claim's attempt number is now the other agent's: the releaser holds nothing
    assert store.complete("agent", [finish("s1_0", 1)], NOW + 3) == [False]
    assert store.complete("other", [finish("s1_0", 1)], NOW + 3) == [True]
    assert store.complete("other", [released(again[1])], NOW + 4) == [True]
    assert store.get_task("s1_1").attempt == 0  # type: ignore[union-attr]


def test_cancel_pending_and_processing(store: TaskStore) -> None:
    make_session(store, n=4)
    store.claim("agent", 1, LEASE, NOW)
    (done,) = store.claim("agent", 1, LEASE, NOW)
    store.complete("agent", [finish(done.task_id, 1)], NOW)
    counts = store.cancel_session("s1", NOW + 1)
    assert (counts.pending, counts.processing, counts.total) == (2, 1, 3)
    assert store.heartbeat("agent", [("s1_0", 1)], LEASE, NOW + 2) == {
        "s1_0": HeartbeatStatus.CANCELLED
    }
    assert store.complete("agent", [finish("s1_0", 1)], NOW + 2) == [False]
    assert store.claim("agent", 10, LEASE, NOW + 2) == []
    again = store.cancel_session("s1", NOW + 3)
    assert again.total == 0
    states = store.count_states("s1")
    assert states[TaskState.CANCELLED] == 3 and states[TaskState.FINISHED] == 1
    info = store.get_session("s1")
    assert info is not None and info.cancelled and info.complete
    assert [r.cursor for r in store.results("s1")] == [1, 2, 3, 4]
    with pytest.raises(NotFound):
        store.cancel_session("nope", NOW)


def test_results_page_in_completion_order_without_gaps(store: TaskStore) -> None:
    make_session(store, n=10)
    leases = store.claim("agent", 10, LEASE, NOW)
    for lease in reversed(leases):
        store.complete("agent", [finish(lease.task_id, 1, str(lease.index).encode())], NOW)
    page1 = store.results("s1", 0, 4)
    page2 = store.results("s1", page1[-1].cursor or 0, 100)
    assert [r.cursor for r in page1 + page2] == list(range(1, 11))
    assert [r.index for r in page1] == [9, 8, 7, 6]
    assert page2[0].output == b"5" and page2[0].state is TaskState.FINISHED


def test_list_and_delete_sessions(store: TaskStore) -> None:
    make_session(store, "old", n=1, now=NOW)
    make_session(store, "new", n=1, now=NOW + 5)
    store.create_session(
        SessionSpec("bobs", 1, owner="bob", content_hash="x"), [NewTask(0, 0, b"0")], NOW + 9
    )
    assert [s.id for s in store.list_sessions()] == ["bobs", "new", "old"]
    assert [s.id for s in store.list_sessions(owner="alice")] == ["new", "old"]
    assert [s.id for s in store.list_sessions(limit=1, offset=1)] == ["new"]
    assert store.delete_session("old") is True and store.delete_session("old") is False
    assert store.get_session("old") is None and store.get_task("old_0") is None


def test_wait_for_tasks(store: TaskStore) -> None:
    assert store.wait_for_tasks(0.05) is False
    timer = threading.Timer(0.1, lambda: make_session(store, n=1))
    timer.start()
    assert store.wait_for_tasks(10) is True
    timer.join()


def test_wait_for_session(store: TaskStore) -> None:
    make_session(store, n=1)
    (lease,) = store.claim("agent", 1, LEASE, NOW)
    assert store.wait_for_session("s1", 0, 0.05) == 0
    timer = threading.Timer(0.1, lambda: store.complete("agent", [finish(lease.task_id, 1)], NOW))
    timer.start()
    assert store.wait_for_session("s1", 0, 10) == 1
    timer.join()
    with pytest.raises(NotFound):
        store.wait_for_session("nope", 0, 0.01)


# ---- grid metadata ---------------------------------------------------------------------------


def test_meta_records_are_set_once_replaced_listed_and_deleted(store: TaskStore) -> None:
    assert store.get_meta("data_url") is None
    assert store.set_meta_if_absent("data_url", "file:///a") == "file:///a"
    assert store.set_meta_if_absent("data_url", "file:///b") == "file:///a"
    assert store.get_meta("data_url") == "file:///a"
    store.put_meta("agents/a1", '{"slots": 2}')
    store.put_meta("agents/a1", '{"slots": 3}')
    store.put_meta("agents/a2", "{}")
    store.put_meta("agentsX", "not an agent")
    assert store.list_meta("agents/") == {"agents/a1": '{"slots": 3}', "agents/a2": "{}"}
    store.delete_meta("agents/a1")
    store.delete_meta("agents/a1")
    assert store.list_meta("agents/") == {"agents/a2": "{}"}
    assert store.list_meta("nothing/") == {}


def _set_meta(url: str, value: str, out: multiprocessing.Queue[str]) -> None:
    s = open_store(url)
    out.put(s.set_meta_if_absent("race", value))
    s.close()


def test_set_meta_if_absent_has_one_winner(
    store: TaskStore, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["store_url"]
    if kind in SHARED_KINDS:
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_set_meta, args=(store.url, v, out)) for v in "ab"]
        for p in procs:
            p.start()
        answers = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    else:
        seen: list[str] = []
        threads = [
            threading.Thread(target=lambda v=v: seen.append(store.set_meta_if_absent("race", v)))
            for v in "ab"
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        answers = seen
    assert len(set(answers)) == 1 and answers[0] == store.get_meta("race")


def test_a_read_only_open_never_creates_a_sqlite_store(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "grid.db"
    with pytest.raises(NotFound, match="no grid at"):
        open_store(f"sqlite://{missing}", create=False)
    assert not missing.parent.exists()
    open_store(f"sqlite://{missing}").close()
    open_store(f"sqlite://{missing}", create=False).close()
