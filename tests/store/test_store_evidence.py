"""Poison evidence on every backend: the list an outcome carries is stored with its task,
survives a requeue and the next claim, is kept when a later outcome carries none, and is
shown by ``get_task`` and ``results``."""

from __future__ import annotations

import json

from test_store_contract import LEASE, NOW, make_session

from htcgrid import evidence
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.store import TaskStore


def death(attempt: int, agent: str) -> dict[str, object]:
    return evidence.entry(
        attempt,
        "WorkerCrashed",
        "worker process killed by SIGKILL",
        exit_code=-9,
        peak_rss_mb=40 + attempt,
        agent=agent,
        host="h1",
        log="x" * 5000 + f"\nlast words {attempt}",
    )


def test_evidence_is_stored_with_the_task_across_attempts(store: TaskStore) -> None:
    make_session(store, n=1, max_attempts=5)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    first = evidence.append(None, death(1, "a1"))
    requeue = Outcome(lease.task_id, 1, TaskState.PENDING, evidence=first)
    assert store.complete("a1", [requeue], NOW) == [True]
    record = store.get_task(lease.task_id)
    assert record is not None and record.state is TaskState.PENDING
    assert evidence.load(record.evidence) == json.loads(first)

    (lease,) = store.claim("a2", 1, LEASE, NOW + 1)
    assert lease.attempt == 2
    both = evidence.append(store.get_task(lease.task_id).evidence, death(2, "a2"))  # type: ignore[union-attr]
    poison = Outcome(lease.task_id, 2, TaskState.FAILED, error=ErrorInfo("PoisonTask", "p"))
    assert store.complete("a2", [Outcome(**{**poison.__dict__, "evidence": both})], NOW + 1)
    record = store.get_task(lease.task_id)
    assert record is not None and record.state is TaskState.FAILED
    deaths = evidence.load(record.evidence)
    assert [(d["attempt"], d["agent"], d["signal"]) for d in deaths] == [
        (1, "a1", "SIGKILL"),
        (2, "a2", "SIGKILL"),
    ]
    assert all(len(d["log_tail"].encode()) <= evidence.LOG_TAIL_BYTES for d in deaths)
    assert deaths[1]["log_tail"].endswith("last words 2")
    (result,) = store.results("s1")
    assert evidence.load(result.evidence) == deaths


def test_an_outcome_without_evidence_keeps_the_tasks(store: TaskStore) -> None:
    make_session(store, n=1, max_attempts=5)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    first = evidence.append(None, death(1, "a1"))
    assert store.complete("a1", [Outcome(lease.task_id, 1, TaskState.PENDING, evidence=first)], NOW)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    done = Outcome(lease.task_id, 2, TaskState.FINISHED, output=b"1", log="fine")
    assert store.complete("a1", [done], NOW) == [True]
    record = store.get_task(lease.task_id)
    assert record is not None and record.state is TaskState.FINISHED
    assert evidence.load(record.evidence) == json.loads(first)


def test_a_task_with_no_deaths_has_no_evidence(store: TaskStore) -> None:
    make_session(store, n=1)
    (lease,) = store.claim("a1", 1, LEASE, NOW)
    assert store.complete("a1", [Outcome(lease.task_id, 1, TaskState.FINISHED, output=b"1")], NOW)
    record = store.get_task(lease.task_id)
    assert record is not None and record.evidence == ""


def test_the_list_is_bounded() -> None:
    text = None
    for attempt in range(1, 15):
        text = evidence.append(text, death(attempt, "a1"))
    kept = evidence.load(text)
    assert [d["attempt"] for d in kept] == list(range(5, 15))
    assert "attempt 14: WorkerCrashed, signal SIGKILL, peak RSS 54 MiB" in evidence.describe(text)
