"""GridService over the memory store and data plane, with an injected clock: each rule of
submit, read, page, cancel and delete pinned in milliseconds (design §2, §5, §6)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from validation_cases import CASES, LIMITS, SERVICE_ONLY, Case, params, request_body

from htcgrid.dataplane import keys, open_data_plane
from htcgrid.errors import Conflict, NotFound, ValidationError
from htcgrid.functions import FunctionRegistry
from htcgrid.models import MAX_CURSOR, ErrorInfo, Outcome, TaskState
from htcgrid.service import MAX_PAGE, PAGE_BYTES, GridService, SubmitRequest
from htcgrid.session_pages import SessionFilter, session_page

try:  # the answers' shapes, in their own module once they leave the service
    from htcgrid.wire import cancel_dict, result_dict, task_dict  # type: ignore[import-not-found]
except ImportError:
    from htcgrid.service import (  # type: ignore[attr-defined,no-redef]
        cancel_dict,
        result_dict,
        task_dict,
    )
from htcgrid.settings import Settings
from htcgrid.store import open_store

NOW = 1_700_000_000.0
MIB = 1024 * 1024


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_service(settings: Settings | None = None, clock: Clock | None = None) -> GridService:
    return GridService(
        open_store("memory://"), open_data_plane("memory://"), settings, clock or Clock()
    )


@pytest.fixture
def service() -> GridService:
    return make_service()


def submit(service: GridService, tasks: Sequence[Any], owner: str = "", **options: Any) -> str:
    return service.submit(SubmitRequest(list(tasks), **options), owner=owner).session_id


def claim(service: GridService, n: int, agent: str = "agent") -> list[Any]:
    return service.store.claim(agent, n, 60.0, service.clock())


def finish(service: GridService, lease: Any, output: bytes, by_ref: bool = False) -> None:
    """Play the agent: record ``output`` for ``lease``, inline or through the data plane."""
    if by_ref:
        key = keys.task_output(lease.session_id, lease.index, lease.attempt)
        service.data.put(key, output)
        outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output_ref=key)
    else:
        outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=output)
    assert service.store.complete("agent", [outcome], service.clock()) == [True]


def run_all(service: GridService, n: int) -> None:
    """Finish ``n`` claimed tasks, each with its index as output, in claim order."""
    for lease in claim(service, n):
        finish(service, lease, json.dumps(lease.index).encode())


# ---- submit: one error per rule ----------------------------------------------------------------


@pytest.mark.parametrize("case", params(CASES + SERVICE_ONLY))
def test_each_submit_rule_refuses_with_its_error_and_changes_nothing(case: Case) -> None:
    service = make_service(LIMITS)
    with pytest.raises(case.error) as raised:
        service.submit(SubmitRequest(**request_body(case)))
    assert type(raised.value) is case.error
    assert case.message in str(raised.value)
    assert service.store.list_sessions() == []


def test_the_values_at_each_limit_are_accepted() -> None:
    service = make_service(LIMITS)
    at_limit = "x" * 98  # 100 bytes as JSON, quotes included
    sid = submit(
        service,
        [at_limit, 1, 2],
        priority=9,
        task_priorities=[0, 9, 5],
        max_attempts=100,
        timeout_seconds=7 * 86400,
        function="default",
        session_id="a" * 64,
    )
    spec = service.session(sid).spec
    assert (spec.task_count, spec.priority, spec.max_attempts) == (3, 9, 100)
    assert spec.timeout_seconds == 7 * 86400.0
    assert service.task_payload(f"{sid}_0") == json.dumps(at_limit).encode()
    assert submit(service, [1], max_attempts=1, priority=0, timeout_seconds=0.001)


def test_a_deployed_function_is_accepted_and_named_in_the_session() -> None:
    service = make_service()
    FunctionRegistry(service.data).deploy("pricing.v2", b"zip", "m.f")
    sid = submit(service, [1], function="pricing.v2")
    assert service.session(sid).spec.function == "pricing.v2"
    assert [le.function for le in claim(service, 1)] == ["pricing.v2"]


def test_the_servers_defaults_apply_when_the_client_gives_none() -> None:
    service = make_service(Settings(max_attempts=3, task_timeout_seconds=60.0))
    spec = service.session(submit(service, [1])).spec
    assert (spec.max_attempts, spec.timeout_seconds) == (3, 60.0)
    lease = claim(service, 1)[0]
    assert (lease.max_attempts, lease.timeout_seconds) == (3, 60.0)
    given = service.session(submit(service, [1], max_attempts=8, timeout_seconds=5)).spec
    assert (given.max_attempts, given.timeout_seconds) == (8, 5.0)


def test_a_session_gets_a_uuid_the_clocks_time_and_positional_task_ids() -> None:
    clock = Clock(1234.5)
    service = make_service(clock=clock)
    result = service.submit(SubmitRequest(["a", "b"]), owner="alice")
    assert uuid.UUID(result.session_id) and (result.task_count, result.created) == (2, True)
    info = service.session(result.session_id)
    assert (info.spec.created_at, info.spec.owner) == (1234.5, "alice")
    task = service.task(f"{result.session_id}_1")
    assert (task.index, task.submitted_at, task.payload) == (1, 1234.5, b'"b"')


def test_task_priorities_override_the_session_priority_per_task(service: GridService) -> None:
    submit(service, ["low", "session", "high"], priority=4, task_priorities=[1, 4, 9])
    submit(service, ["plain"], priority=4, session_id="later")
    order = [(le.session_id == "later", le.index) for le in claim(service, 4)]
    assert order == [(False, 2), (False, 1), (True, 0), (False, 0)]


def test_a_resubmit_of_the_same_content_is_a_no_op(service: GridService) -> None:
    first = service.submit(SubmitRequest([1, {"a": 2}], session_id="same", priority=3))
    claim(service, 1)
    again = service.submit(SubmitRequest([1, {"a": 2}], session_id="same", priority=3))
    assert (first.created, again.created, again.task_count) == (True, False, 2)
    counts = service.status("same").counts
    assert (counts[TaskState.PROCESSING], counts[TaskState.PENDING]) == (1, 1)


def test_naming_the_servers_default_is_the_same_content_as_omitting_it() -> None:
    service = make_service(Settings(max_attempts=4, task_timeout_seconds=30.0))
    submit(service, [1], session_id="defaults")
    again = service.submit(
        SubmitRequest([1], session_id="defaults", max_attempts=4, timeout_seconds=30)
    )
    assert again.created is False


@pytest.mark.parametrize(
    "change",
    [
        {"tasks": [1, 3]},
        {"tasks": [1]},
        {"tasks": [1, 2, 3]},
        {"priority": 1},
        {"task_priorities": [0, 1]},
        {"max_attempts": 2},
        {"timeout_seconds": 10},
        {"retry_on_error": True},
    ],
    ids=lambda change: ",".join(change),
)
def test_a_resubmit_with_other_content_is_a_conflict(change: dict[str, Any]) -> None:
    service = make_service()
    submit(service, [1, 2], session_id="taken")
    before = service.task("taken_0")
    body = {"tasks": [1, 2], "session_id": "taken", **change}
    with pytest.raises(Conflict):
        service.submit(SubmitRequest(**body))
    assert service.session("taken").spec.task_count == 2
    assert service.task("taken_0") == before


def test_another_owners_session_id_is_a_conflict_even_with_the_same_content() -> None:
    service = make_service()
    submit(service, [1], owner="alice", session_id="hers")
    with pytest.raises(Conflict, match="already in use"):
        service.submit(SubmitRequest([1], session_id="hers"), owner="bob")
    assert service.session("hers").spec.owner == "alice"


def test_a_payload_over_the_inline_limit_goes_to_the_data_plane() -> None:
    service = make_service(Settings(inline_limit_bytes=10))
    sid = submit(service, ["small", "x" * 20])
    small, big = service.task(f"{sid}_0"), service.task(f"{sid}_1")
    assert (small.payload, small.payload_ref) == (b'"small"', None)
    assert big.payload is None and big.payload_ref == keys.task_input(sid, 1)
    assert service.data.get(big.payload_ref) == json.dumps("x" * 20).encode()
    assert service.task_payload(f"{sid}_1") == json.dumps("x" * 20).encode()
    assert task_dict(big)["payload_url"] == f"/v1/tasks/{sid}_1/payload"
    assert task_dict(small)["payload_url"] is None and task_dict(small)["payload"] == "small"


def test_a_refused_submit_leaves_no_blob_behind() -> None:
    service = make_service(Settings(inline_limit_bytes=10))
    with pytest.raises(ValidationError):
        submit(service, ["x" * 20, object()], session_id="half")
    with pytest.raises(NotFound):
        service.data.get(keys.task_input("half", 0))


# ---- status and counts -----------------------------------------------------------------------


def test_status_counts_every_state_and_knows_when_the_session_is_complete(
    service: GridService,
) -> None:
    sid = submit(service, range(5), owner="alice", priority=2)
    leases = claim(service, 3)
    finish(service, leases[0], b"0")
    failed = Outcome(
        leases[1].task_id, leases[1].attempt, TaskState.FAILED, error=ErrorInfo("E", "m")
    )
    assert service.store.complete("agent", [failed], NOW) == [True]
    status = service.status(sid)
    assert status.as_dict() == {
        "session_id": sid,
        "task_count": 5,
        "function": "default",
        "priority": 2,
        "max_attempts": 6,
        "timeout_seconds": 3600.0,
        "owner": "alice",
        "created_at": NOW,
        "complete": False,
        "cancelled": False,
        "done_count": 2,
        "counts": {"pending": 2, "processing": 1, "finished": 1, "failed": 1, "cancelled": 0},
    }
    for lease in [leases[2], *claim(service, 2)]:
        finish(service, lease, b"1")
    done = service.status(sid, wait_seconds=30)  # complete: answers at once
    assert done.info.complete and done.info.done_count == 5


# ---- results ---------------------------------------------------------------------------------


def test_results_page_by_count_in_done_order_without_skips_or_repeats(
    service: GridService,
) -> None:
    sid = submit(service, range(10))
    run_all(service, 10)
    seen: list[int] = []
    after = 0
    while True:
        page = service.results(sid, after, limit=3)
        assert len(page.results) <= 3
        seen += [r.index for r in page.results]
        assert page.cursor == len(seen) and page.complete == (len(seen) == 10)
        if page.complete:
            break
        after = page.cursor
    assert sorted(seen) == list(range(10)) and len(seen) == 10
    assert service.results(sid, 10).results == [] and service.results(sid, 10).cursor == 10


def test_a_page_stops_at_what_is_done_and_continues_from_there(service: GridService) -> None:
    sid = submit(service, range(4))
    leases = claim(service, 4)
    for lease in leases[:2]:
        finish(service, lease, b"1")
    page = service.results(sid, 0)
    assert ([r.index for r in page.results], page.cursor, page.complete) == ([0, 1], 2, False)
    assert service.results(sid, page.cursor).results == []
    assert service.results(sid, page.cursor).cursor == 2  # an empty page keeps the cursor
    for lease in leases[2:]:
        finish(service, lease, b"2")
    rest = service.results(sid, page.cursor)
    assert ([r.index for r in rest.results], rest.cursor, rest.complete) == ([2, 3], 4, True)


def test_results_page_by_bytes_and_the_cursor_never_skips_or_repeats(
    service: GridService,
) -> None:
    sizes = [3 * MIB, 10, 3 * MIB, 3 * MIB, PAGE_BYTES + 1, 10, 5 * MIB, 4 * MIB]
    sid = submit(service, range(len(sizes)))
    for lease in claim(service, len(sizes)):
        size = sizes[lease.index]
        finish(service, lease, json.dumps("x" * (size - 2)).encode(), by_ref=size > 100)
    pages: list[list[int]] = []
    after = 0
    while after < len(sizes):
        page = service.results(sid, after, limit=3)
        assert page.results, "a page that is not the last must hold at least one result"
        carried = sum(len(r.output or b"") for r in page.results)
        assert carried <= PAGE_BYTES
        pages.append([r.index for r in page.results])
        after = page.cursor
    assert pages == [[0, 1, 2], [3], [4], [5, 6], [7]]
    huge = service.results(sid, 4, limit=1).results[0]
    assert huge.output is None and huge.output_ref is not None
    assert result_dict(huge)["output_url"] == f"/v1/tasks/{sid}_4/output"
    assert len(service.task_output(f"{sid}_4")) == PAGE_BYTES + 1


def test_a_long_poll_returns_with_the_result_that_ends_it(service: GridService) -> None:
    sid = submit(service, range(2))
    leases = claim(service, 2)
    finish(service, leases[0], b"0")
    pages: list[Any] = []
    poll = threading.Thread(target=lambda: pages.append(service.results(sid, 1, wait_seconds=30)))
    poll.start()  # the poll waits for the result, or finds it if it comes first
    finish(service, leases[1], b"1")
    poll.join(timeout=30)
    page = pages[0]
    assert ([r.index for r in page.results], page.cursor, page.complete) == ([1], 2, True)
    assert service.status(sid, wait_seconds=30).info.complete


def test_results_refuse_a_cursor_out_of_range_and_clamp_the_limit(service: GridService) -> None:
    sid = submit(service, range(3))
    run_all(service, 3)
    for cursor in (-1, MAX_CURSOR + 1, 10**40):  # beyond what a database integer holds
        with pytest.raises(ValidationError, match="cursor must be between 0 and"):
            service.results(sid, cursor)
        with pytest.raises(ValidationError, match="cursor must be between 0 and"):
            session_page(service, None, SessionFilter(), 10, cursor)
    assert service.results(sid, MAX_CURSOR).results == []
    assert len(service.results(sid, 0, limit=0).results) == 1
    assert len(service.results(sid, 0, limit=-5).results) == 1
    assert len(service.results(sid, 0, limit=MAX_PAGE * 10).results) == 3


def test_no_page_holds_more_than_max_page_results(service: GridService) -> None:
    sid = submit(service, [0] * (MAX_PAGE + 1))
    leases = claim(service, MAX_PAGE + 1)
    done = [Outcome(le.task_id, le.attempt, TaskState.FINISHED, output=b"0") for le in leases]
    assert all(service.store.complete("agent", done, NOW))
    page = service.results(sid, 0, limit=MAX_PAGE + 1)
    assert (len(page.results), page.cursor, page.complete) == (MAX_PAGE, MAX_PAGE, False)
    assert [r.index for r in service.results(sid, MAX_PAGE).results] == [MAX_PAGE]


def test_a_result_carries_its_output_error_and_attempts(service: GridService) -> None:
    sid = submit(service, range(2))
    ok, bad = claim(service, 2)
    finish(service, ok, b'{"v":1}')
    error = ErrorInfo("ValueError", "bad input", "Traceback …")
    outcome = Outcome(bad.task_id, bad.attempt, TaskState.FAILED, error=error)
    assert service.store.complete("agent", [outcome], NOW) == [True]
    by_index = {r.index: result_dict(r) for r in service.results(sid).results}
    assert by_index[0].pop("output_url", None) is None  # only an output left behind has one
    assert by_index[0] == {
        "task_id": f"{sid}_0",
        "index": 0,
        "state": "finished",
        "attempts": 1,
        "output": {"v": 1},
        "error": None,
    }
    assert by_index[1]["state"] == "failed" and by_index[1]["output"] is None
    assert by_index[1]["error"] == {
        "type": "ValueError",
        "message": "bad input",
        "traceback": "Traceback …",
    }


# ---- tasks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tid", ["nonsense", "x_y", "_1", "nosuch_0", "../etc_0", "s_5", "s_-1"])
def test_an_unknown_or_malformed_task_id_is_not_found(service: GridService, tid: str) -> None:
    submit(service, [1], session_id="s")
    with pytest.raises(NotFound):
        service.task(tid)
    with pytest.raises(NotFound):
        service.task_output(tid)
    with pytest.raises(NotFound):
        service.task_payload(tid)


def test_task_output_is_there_once_finished(service: GridService) -> None:
    sid = submit(service, [None, 2])
    with pytest.raises(NotFound, match=r"has no output \(pending\)"):
        service.task_output(f"{sid}_0")
    assert service.task_payload(f"{sid}_0") == b"null"
    for lease in claim(service, 2):
        finish(service, lease, b'"out"', by_ref=lease.index == 1)
    assert service.task_output(f"{sid}_0") == b'"out"'
    assert service.task_output(f"{sid}_1") == b'"out"'
    assert service.task(f"{sid}_1").output is None  # by reference: the record keeps the key


# ---- cancel and delete -----------------------------------------------------------------------


def test_cancel_stops_what_is_not_terminal_once(service: GridService) -> None:
    sid = submit(service, range(4))
    leases = claim(service, 2)
    finish(service, leases[0], b"0")
    counts = service.cancel(sid)
    assert cancel_dict(sid, counts) == {
        "session_id": sid,
        "cancelled_pending": 2,
        "cancelled_processing": 1,
        "total_cancelled_tasks": 3,
    }
    assert service.cancel(sid).total == 0  # idempotent
    status = service.status(sid)
    assert status.counts[TaskState.CANCELLED] == 3 and status.counts[TaskState.FINISHED] == 1
    assert status.info.cancelled and status.info.complete
    late = Outcome(leases[1].task_id, leases[1].attempt, TaskState.FINISHED, output=b"1")
    assert service.store.complete("agent", [late], NOW) == [False]


def test_cancelling_a_complete_session_leaves_it_exactly_as_it_was(service: GridService) -> None:
    sid = submit(service, range(2))
    run_all(service, 2)
    before = (service.session(sid), [service.task(f"{sid}_{i}") for i in range(2)])
    assert service.cancel(sid).total == 0
    assert (service.session(sid), [service.task(f"{sid}_{i}") for i in range(2)]) == before
    assert service.session(sid).cancelled is False


def test_delete_removes_the_session_its_tasks_and_its_data() -> None:
    service = make_service(Settings(inline_limit_bytes=10))
    sid = submit(service, ["x" * 20, 1])
    kept = submit(service, ["y" * 20])
    leases = claim(service, 1)
    finish(service, leases[0], b'"big output"', by_ref=True)
    output_key = keys.task_output(sid, 0, 1)
    service.delete(sid)
    for call in (service.session, service.status, service.results, service.cancel):
        with pytest.raises(NotFound):
            call(sid)
    with pytest.raises(NotFound):
        service.task(f"{sid}_1")
    for key in (keys.task_input(sid, 0), output_key):
        with pytest.raises(NotFound):
            service.data.get(key)
    with pytest.raises(NotFound):
        service.delete(sid)
    assert service.task_payload(f"{kept}_0") == json.dumps("y" * 20).encode()
    assert [s.info.id for s in service.sessions()] == [kept]


def test_a_deleted_session_id_may_be_used_again(service: GridService) -> None:
    submit(service, [1], session_id="again")
    service.delete("again")
    result = service.submit(SubmitRequest([2, 3], session_id="again"))
    assert result.created and service.session("again").spec.task_count == 2


# ---- sessions and owners ---------------------------------------------------------------------


def test_sessions_are_listed_newest_first_per_owner_and_paged() -> None:
    clock = Clock()
    service = make_service(clock=clock)
    made = []
    for i, owner in enumerate(["alice", "bob", "alice", "alice"]):
        clock.now = NOW + i
        made.append(submit(service, [i], owner=owner))
    assert [s.info.id for s in service.sessions()] == made[::-1]
    assert [s.info.id for s in service.sessions("alice")] == [made[3], made[2], made[0]]
    assert [s.info.id for s in service.sessions("alice", limit=1, offset=1)] == [made[2]]
    assert [s.info.id for s in service.sessions("alice", limit=0)] == [made[3]]
    assert [s.info.id for s in service.sessions(offset=-3, limit=1)] == [made[3]]
    assert service.sessions("carol") == []
    listed = service.sessions("bob")[0]
    assert listed.counts[TaskState.PENDING] == 1 and listed.info.spec.owner == "bob"


def test_another_owners_session_is_not_found_on_every_call(service: GridService) -> None:
    sid = submit(service, [1, 2], owner="alice")
    run_all(service, 1)
    calls = [
        lambda: service.session(sid, "bob"),
        lambda: service.status(sid, "bob"),
        lambda: service.results(sid, owner="bob"),
        lambda: service.task(f"{sid}_0", "bob"),
        lambda: service.task_output(f"{sid}_0", "bob"),
        lambda: service.task_payload(f"{sid}_0", "bob"),
        lambda: service.cancel(sid, "bob"),
        lambda: service.delete(sid, "bob"),
    ]
    for call in calls:
        with pytest.raises(NotFound, match=f"no session {sid}"):
            call()
    assert service.status(sid, "alice").counts[TaskState.PENDING] == 1  # untouched
    assert service.task_output(f"{sid}_0", None) == b"0"  # an admin (owner None) sees all
    assert service.cancel(sid, "alice").total == 1


@pytest.mark.parametrize("sid", ["", "../x", "a_b", "a" * 65, "a/b"])
def test_a_session_id_that_cannot_exist_is_not_found(service: GridService, sid: str) -> None:
    with pytest.raises(NotFound):
        service.status(sid)
    with pytest.raises(NotFound):
        service.delete(sid)
