"""``TaskStore.task_counts``: the grid-wide counts behind ``/metrics``, on every backend."""

from __future__ import annotations

from test_store_contract import LEASE, NOW, finish, make_session

from htcgrid.models import TaskState
from htcgrid.store import TaskStore


def test_tasks_are_counted_by_function_state_and_priority(store: TaskStore) -> None:
    assert store.task_counts() == {}
    make_session(store, "s1", n=3, priority=2)
    make_session(store, "s2", n=2, priority=5, function="price")
    (lease,) = store.claim("a1", 1, LEASE, NOW, functions=["price"])
    assert store.complete("a1", [finish(lease.task_id, lease.attempt)], NOW) == [True]
    store.claim("a1", 1, LEASE, NOW, functions=["price"])
    assert store.task_counts() == {
        ("default", TaskState.PENDING, 2): 3,
        ("price", TaskState.FINISHED, 5): 1,
        ("price", TaskState.PROCESSING, 5): 1,
    }
