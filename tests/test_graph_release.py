"""The releaser over every task store, driven by hand (no agent): it releases a task once all
its dependencies finished, fails dependents of a failed or cancelled task transitively, picks
up an open graph after a restart from the blob and the results, and drops the session's
marker once it is complete; and the graph's submit-time rules that need the store."""

from __future__ import annotations

import pytest

from htcgrid.dataplane.memory import MemoryDataPlane
from htcgrid.errors import Conflict, ValidationError
from htcgrid.graph_release import GraphReleaser
from htcgrid.graph_submit import MARKER_PREFIX, load_graph, marker
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService, SubmitRequest
from htcgrid.store import TaskStore

pytestmark = pytest.mark.filterwarnings("ignore::htcgrid.NoAgentWarning")
NOW = 1_000_000.0


@pytest.fixture
def service(store: TaskStore) -> GridService:
    return GridService(store, MemoryDataPlane(), clock=lambda: NOW)


def submit(service: GridService, deps: list[object], owner: str = "", **more: object) -> str:
    tasks = [{"i": i} for i in range(len(deps))]
    request = SubmitRequest(tasks=tasks, deps=deps, **more)  # type: ignore[arg-type]
    service.releaser.notify = lambda session_id: None  # type: ignore[method-assign]  # by hand
    return service.submit(request, owner).session_id


def claimable(store: TaskStore) -> list[str]:
    return sorted(lease.task_id for lease in store.claim("agent", 100, 30.0, NOW))


def end(store: TaskStore, tid: str, state: TaskState = TaskState.FINISHED) -> None:
    output = b'"ok"' if state is TaskState.FINISHED else None
    assert store.complete("agent", [Outcome(tid, 1, state, output=output)], NOW) == [True]


def test_release_follows_the_results_and_survives_a_restart(service: GridService) -> None:
    store = service.store
    sid = submit(service, [None, None, [0, 1], [2]])
    a, b, c, d = (f"{sid}_{i}" for i in range(4))
    assert claimable(store) == [a, b]  # held: c and d
    end(store, a)
    first = GraphReleaser(store, service.data, clock=lambda: NOW)
    first.run_until_idle()
    assert claimable(store) == []  # c still waits for b
    end(store, b)
    restarted = GraphReleaser(store, service.data, clock=lambda: NOW)  # a new server
    restarted.run_until_idle()
    first.run_until_idle()  # both may run: release is idempotent
    assert claimable(store) == [c]
    end(store, c)
    restarted.run_until_idle()
    assert claimable(store) == [d]
    assert store.get_meta(marker(sid)) is not None
    end(store, d)
    restarted.run_until_idle()
    assert store.list_meta(MARKER_PREFIX) == {}  # complete: no longer followed


def test_failure_and_cancel_fail_dependents_transitively(service: GridService) -> None:
    store = service.store
    sid = submit(service, [None, [0], [1], None, [3], [3, 0]])
    releaser = GraphReleaser(store, service.data, clock=lambda: NOW)
    for lease in store.claim("agent", 100, 30.0, NOW):
        state = TaskState.FAILED if lease.index == 0 else TaskState.FINISHED
        end(store, lease.task_id, state)
    store.cancel_tasks(sid, [4], NOW)
    releaser.run_until_idle()
    tasks = {i: store.get_task(f"{sid}_{i}") for i in range(6)}
    states = {i: t.state for i, t in tasks.items() if t is not None}
    assert states == {
        0: TaskState.FAILED,
        1: TaskState.FAILED,
        2: TaskState.FAILED,
        3: TaskState.FINISHED,
        4: TaskState.CANCELLED,
        5: TaskState.FAILED,
    }
    messages = {i: t.error.message for i, t in tasks.items() if t is not None and t.error}
    assert messages[1] == f"dependency {sid}_0 failed"
    assert messages[2] == f"dependency {sid}_1 failed"
    assert messages[5] in (f"dependency {sid}_0 failed", f"dependency {sid}_4 cancelled")
    assert all(t is not None and t.attempt == 0 for i, t in tasks.items() if i in (1, 2, 5))
    assert claimable(store) == []
    releaser.run_until_idle()
    assert store.list_meta(MARKER_PREFIX) == {}


def test_a_dependency_in_an_earlier_session(service: GridService) -> None:
    store = service.store
    earlier = submit(service, [None])
    later = submit(service, [[f"{earlier}_0"], None])
    assert claimable(store) == sorted([f"{earlier}_0", f"{later}_1"])
    releaser = GraphReleaser(store, service.data, clock=lambda: NOW)
    releaser.run_until_idle()
    assert claimable(store) == []
    end(store, f"{earlier}_0")
    releaser.run_until_idle()
    assert claimable(store) == [f"{later}_0"]


def test_another_owners_tasks_are_unknown(service: GridService) -> None:
    theirs = submit(service, [None], owner="bob")
    with pytest.raises(ValidationError, match=f"^task 0: unknown dependency {theirs}_0$"):
        submit(service, [[f"{theirs}_0"]], owner="alice")
    with pytest.raises(ValidationError, match=f"^task 0: unknown dependency {theirs}_5$"):
        submit(service, [[f"{theirs}_5"]], owner="bob")
    assert submit(service, [[f"{theirs}_0"]], owner="bob")


def test_the_graph_is_part_of_the_content_and_goes_with_the_session(
    service: GridService,
) -> None:
    sid = submit(service, [None, [0]], session_id="g-1")
    assert submit(service, [None, [0]], session_id="g-1") == sid  # the same: a no-op
    with pytest.raises(Conflict):
        submit(service, [None, None], session_id="g-1")
    with pytest.raises(Conflict):
        submit(service, [[1], None], session_id="g-1")
    graph = load_graph(service.data, sid)
    assert graph is not None and graph.dep_ids(sid, 1) == [f"{sid}_0"]
    service.delete(sid)
    assert load_graph(service.data, sid) is None
    releaser = GraphReleaser(service.store, service.data, clock=lambda: NOW)
    releaser.run_until_idle()
    assert service.store.list_meta(MARKER_PREFIX) == {}  # a deleted session's marker goes


def test_a_session_without_deps_has_no_graph(service: GridService) -> None:
    sid = service.submit(SubmitRequest(tasks=[1, 2], deps=[None, []])).session_id
    assert load_graph(service.data, sid) is None
    assert service.store.list_meta(MARKER_PREFIX) == {}


def test_a_marker_waits_for_its_session_to_be_created(service: GridService) -> None:
    """A releaser may scan while a big submit still inserts its tasks: the marker is kept for
    the session to appear, and dropped once that submit has clearly failed."""
    from htcgrid.graph import from_lists
    from htcgrid.graph_submit import store_graph

    graph = from_lists("g-2", [None, [0]], 2)
    assert graph is not None
    store_graph(service.store, service.data, "g-2", graph, NOW)
    GraphReleaser(service.store, service.data, clock=lambda: NOW + 60).run_until_idle()
    assert service.store.get_meta(marker("g-2")) is not None
    GraphReleaser(service.store, service.data, clock=lambda: NOW + 7200).run_until_idle()
    assert service.store.get_meta(marker("g-2")) is None
