"""Fair share between owners in every store's claim (``htcgrid.store.share``): slots go to
the owner with the lowest running/share, priorities stay strict within one owner, and a
quota caps an owner's running tasks."""

from __future__ import annotations

from collections import Counter

import pytest
from test_store_contract import LEASE, NOW, finish

from htcgrid.models import Lease, NewTask, SessionSpec
from htcgrid.store import TaskStore
from htcgrid.store.share import Share, share_key


def submit(
    store: TaskStore, sid: str, owner: str, n: int, priority: int = 0, function: str = "f"
) -> None:
    spec = SessionSpec(
        id=sid, task_count=n, priority=priority, function=function, owner=owner, content_hash=sid
    )
    tasks = [NewTask(i, priority, payload=b"1") for i in range(n)]
    assert store.create_session(spec, tasks, NOW) is True


def set_share(store: TaskStore, owner: str, share: float, max_running: int | None = None) -> None:
    store.put_meta(share_key(owner), Share(share, max_running).to_json())


def owners_of(leases: list[Lease]) -> Counter[str]:
    return Counter(lease.session_id.split("-")[0] for lease in leases)


def claim_one_by_one(store: TaskStore, n: int, now: float = NOW) -> list[Lease]:
    leases: list[Lease] = []
    for _ in range(n):
        leases += store.claim("agent", 1, LEASE, now)
    return leases


def test_two_owners_share_equally_however_much_one_queued_first(store: TaskStore) -> None:
    submit(store, "a-1", "a", 40)
    submit(store, "b-1", "b", 10)
    assert owners_of(store.claim("agent", 8, LEASE, NOW)) == {"a": 4, "b": 4}
    assert owners_of(claim_one_by_one(store, 4)) == {"a": 2, "b": 2}


def test_shares_weigh_the_split_three_to_one(store: TaskStore) -> None:
    set_share(store, "a", 3)
    submit(store, "b-1", "b", 40)  # b queued first: its backlog does not hold a back
    submit(store, "a-1", "a", 40)
    assert owners_of(store.claim("agent", 8, LEASE, NOW)) == {"a": 6, "b": 2}
    assert owners_of(claim_one_by_one(store, 8)) == {"a": 6, "b": 2}


def test_an_owner_joining_late_catches_up_then_shares(store: TaskStore) -> None:
    submit(store, "a-1", "a", 30)
    submit(store, "b-1", "b", 30)
    assert owners_of(store.claim("agent", 8, LEASE, NOW)) == {"a": 4, "b": 4}
    submit(store, "c-1", "c", 30)
    assert owners_of(claim_one_by_one(store, 4)) == {"c": 4}
    assert owners_of(store.claim("agent", 6, LEASE, NOW)) == {"a": 2, "b": 2, "c": 2}


def test_finished_tasks_free_their_owners_slots(store: TaskStore) -> None:
    submit(store, "a-1", "a", 30)
    first = store.claim("agent", 4, LEASE, NOW)  # only a has work: a runs 4
    assert owners_of(first) == {"a": 4}
    submit(store, "b-1", "b", 30)
    assert owners_of(store.claim("agent", 4, LEASE, NOW)) == {"b": 4}
    done = [finish(lease.task_id, lease.attempt) for lease in first]
    assert all(store.complete("agent", done, NOW))
    assert owners_of(store.claim("agent", 4, LEASE, NOW)) == {"a": 4}  # a 4, b 4 again


def test_priorities_stay_strict_within_an_owner(store: TaskStore) -> None:
    submit(store, "a-low", "a", 5, priority=1)
    submit(store, "a-high", "a", 5, priority=8)
    submit(store, "b-1", "b", 5, priority=0)
    leases = claim_one_by_one(store, 6)
    assert owners_of(leases) == {"a": 3, "b": 3}  # b's priority 0 is not starved by a's 8
    a_sessions = [lease.session_id for lease in leases if lease.session_id.startswith("a")]
    assert a_sessions == ["a-high"] * 3
    a_indexes = [lease.index for lease in leases if lease.session_id == "a-high"]
    assert a_indexes == [0, 1, 2]  # FIFO within a priority


def test_an_owners_quota_caps_its_running_tasks(store: TaskStore) -> None:
    set_share(store, "a", 1, max_running=2)
    submit(store, "a-1", "a", 10)
    first = store.claim("agent", 10, LEASE, NOW)
    assert owners_of(first) == {"a": 2}
    assert store.claim("agent", 10, LEASE, NOW) == []
    submit(store, "b-1", "b", 10)
    assert owners_of(store.claim("agent", 5, LEASE, NOW)) == {"b": 5}
    assert all(store.complete("agent", [finish(first[0].task_id, first[0].attempt)], NOW))
    assert owners_of(store.claim("agent", 10, LEASE, NOW)) == {"a": 1, "b": 5}


def test_a_claim_for_some_functions_shares_among_their_owners(store: TaskStore) -> None:
    submit(store, "a-1", "a", 10, function="f")
    submit(store, "b-1", "b", 10, function="g")
    submit(store, "c-1", "c", 10, function="g")
    assert owners_of(store.claim("agent", 4, LEASE, NOW, functions=["g"])) == {"b": 2, "c": 2}
    assert owners_of(store.claim("agent", 4, LEASE, NOW, functions=["f"])) == {"a": 4}


def test_redis_moves_the_queues_of_a_grid_from_before_fair_share(store: TaskStore) -> None:
    from htcgrid.store.redis import RedisTaskStore

    if not isinstance(store, RedisTaskStore):
        pytest.skip("the queue layout before fair share was Redis's")
    submit(store, "a-1", "a", 4)
    submit(store, "b-1", "b", 4)
    client, prefix = store._client, store.keys.prefix
    old = f"{prefix}queue:f"
    client.zunionstore(old, [f"{prefix}queue:f:a", f"{prefix}queue:f:b"])  # one queue, as it was
    client.delete(f"{prefix}queue:f:a", f"{prefix}queue:f:b", f"{prefix}owners:f")
    again = RedisTaskStore(store.url)  # a store of the new version opens the old grid
    try:
        assert owners_of(again.claim("agent", 4, LEASE, NOW)) == {"a": 2, "b": 2}
        assert not client.exists(old)
        assert owners_of(again.claim("agent", 8, LEASE, NOW)) == {"a": 2, "b": 2}
    finally:
        again.close()


def test_sqlite_gives_a_file_from_before_fair_share_its_owners(store: TaskStore) -> None:
    from htcgrid.store.sqlite import SQLiteTaskStore

    if not isinstance(store, SQLiteTaskStore):
        pytest.skip("the file layout before fair share was SQLite's")
    submit(store, "a-1", "a", 4)
    submit(store, "b-1", "b", 4)
    store._conn().executescript(  # the file as an older htcgrid left it
        "DROP INDEX tasks_queue_by_tenant; ALTER TABLE tasks DROP COLUMN tenant;"
        "CREATE INDEX tasks_queue ON tasks (priority DESC, seq) WHERE state = 'pending';"
    )
    again = SQLiteTaskStore(store.url)
    try:
        assert owners_of(again.claim("agent", 4, LEASE, NOW)) == {"a": 2, "b": 2}
        indexes = {r[0] for r in again._conn().execute("SELECT name FROM sqlite_master")}
        assert "tasks_queue" not in indexes and "tasks_queue_by_tenant" in indexes
    finally:
        again.close()
