"""The AWS task store under races and lost replies, against moto's server on loopback:
agents finishing one session at once, a claim or a completion whose reply was lost after the
write, and a retried task's queue. What each test simulates is in its docstring."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from backends import aws_grid, require_module, threads_interleave_often
from test_aws import LEASE, NOW, _spec, _store, _tasks

from htcgrid.models import Outcome, TaskState

require_module("boto3")


@pytest.fixture
def grid_url() -> Iterator[str]:
    with aws_grid(f"t{uuid.uuid4().hex[:10]}") as url:
        yield url


def test_concurrent_completions_keep_every_result_and_its_number(grid_url: str) -> None:
    """Four agents claim and finish 120 tasks of one session at once, their completion
    transactions racing for the session's counter: every result is kept, each with its own
    number, so paging results never stops at a gap. Against moto this holds only with the
    DynamoDB lock of tests/backends.py: a transaction moto cancels puts back copies of whole
    tables taken before it, undoing the others' writes (the AWS end-to-end run stalled on
    such a gap, waiting for results that were never numbered)."""
    store = _store(grid_url)
    store.create_session(_spec("s1", 120), _tasks(120), NOW)

    def agent(name: str) -> None:
        empty = 0
        while empty < 3:  # the others may hold the rest: stop after a few empty claims
            leases = store.claim(name, 3, LEASE, NOW)
            empty = 0 if leases else empty + 1
            done = [Outcome(le.task_id, le.attempt, TaskState.FINISHED, b"1") for le in leases]
            store.complete(name, done, NOW + 1)  # a refused one stays processing: seen below

    with threads_interleave_often():
        threads = [threading.Thread(target=agent, args=(f"a{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert store.count_states("s1")[TaskState.FINISHED] == 120
    results = store.results("s1", 0, 1000)
    assert sorted(int(r.task_id.split("_")[1]) for r in results) == list(range(120))
    store.close()


class ReplyLost:
    """A DynamoDB client whose first ``method`` call is applied by moto and then answers a 500,
    as when the reply is lost after the write (simulated: the lost reply, and DynamoDB's
    idempotency of ``TransactWriteItems``: a repeat of a committed transaction's
    ``ClientRequestToken`` succeeds, which moto does not do; real: the write, our retry, and
    moto's answer to a repeated ``UpdateItem``)."""

    def __init__(self, client: Any, method: str) -> None:
        self.client = client
        self.method = method
        self.lost = 0
        self.committed: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.client, name)
        if name != self.method:
            return real

        def call(**kwargs: Any) -> Any:
            from botocore.exceptions import ClientError

            token = kwargs.get("ClientRequestToken")
            if token is not None and token in self.committed:
                return {}
            answer = real(**kwargs)
            if token is not None:
                self.committed.add(token)
            if not self.lost:
                self.lost += 1
                error = {"Error": {"Code": "InternalServerError", "Message": "reply lost"}}
                raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 500}}, name)
            return answer

        return call


def test_a_claim_whose_reply_was_lost_is_still_ours(grid_url: str) -> None:
    """The claim's write is applied but its reply lost; the retry finds the task taken, by
    this claim (same owner, same message receipt): the lease is returned, not dropped to wait
    for its expiry and cost an attempt."""
    store = _store(grid_url)
    store.create_session(_spec(n=1), _tasks(1), NOW)
    flaky = ReplyLost(store.grid.db, "update_item")
    store.grid.db = flaky
    leases = store.claim("agent", 1, LEASE, NOW)
    assert flaky.lost == 1
    assert [(le.task_id, le.attempt) for le in leases] == [("s1_0", 1)]
    assert store.claim("other", 1, LEASE, NOW) == []
    store.close()


def test_a_requeue_whose_reply_was_lost_is_counted_and_sent(grid_url: str) -> None:
    """The TTL checker's requeue is applied but its reply lost; the retry finds the task
    pending, requeued by this very write (its token): it is counted once and its message sent
    now, instead of neither, leaving the task to wait a minute for the lost-message sweep."""
    store = _store(grid_url)
    store.create_session(_spec(n=1), _tasks(1), NOW)
    assert len(store.claim("dead", 1, LEASE, NOW)) == 1
    flaky = ReplyLost(store.grid.db, "update_item")
    store.grid.db = flaky
    assert store.expire_leases(NOW + LEASE + 1).requeued == ["s1_0"]
    assert flaky.lost == 1
    assert [(le.task_id, le.attempt) for le in store.claim("alive", 1, LEASE, NOW + 12)] == [
        ("s1_0", 2)
    ]
    store.close()


def test_a_completion_whose_reply_was_lost_is_still_applied(grid_url: str) -> None:
    """The completion transaction commits but its reply is lost; our retry repeats it with
    the same ClientRequestToken, which DynamoDB answers with success: the agent is told its
    result was recorded, not that it lost a race to itself."""
    store = _store(grid_url)
    store.create_session(_spec(n=1), _tasks(1), NOW)
    [lease] = store.claim("agent", 1, LEASE, NOW)
    flaky = ReplyLost(store.grid.db, "transact_write_items")
    store.grid.finisher.db = flaky
    done = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, b"1")
    assert store.complete("agent", [done], NOW + 1) == [True]
    assert flaky.lost == 1
    assert [r.output for r in store.results("s1", 0, 10)] == [b"1"]
    store.close()


def test_a_retried_task_goes_back_to_the_queue_of_its_priority() -> None:
    """On a grid of 3 queues priority 9 lives in queue 2; a retried task goes back there
    (its priority is not a queue number: queue 9 does not exist)."""
    with aws_grid(f"t{uuid.uuid4().hex[:10]}", queues=3) as url:
        store = _store(url)
        store.create_session(_spec(n=1), _tasks(1, priority=9), NOW)
        [lease] = store.claim("agent", 1, LEASE, NOW)
        store.complete("agent", [Outcome(lease.task_id, 1, TaskState.FAILED)], NOW + 1)
        assert store.retry("s1", None, NOW + 2) == ["s1_0"]
        assert [le.task_id for le in store.claim("agent", 1, LEASE, NOW + 3)] == ["s1_0"]
        store.close()
