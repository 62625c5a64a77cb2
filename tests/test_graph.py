"""Task graphs end to end, on every backend, in process and over HTTP: outputs flow along the
edges (``context.inputs`` and ``event["inputs"]``), a failed or cancelled dependency fails its
dependents transitively without running them, graphs are checked at submit, and
``Executor.submit`` takes futures as arguments."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from agent_thread import running
from backends import STORE_KINDS, backend_url
from procs import until
from sample_handlers_path import HERE

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api.server import APIServer, bind
from htcgrid.client.session import Client, Session
from htcgrid.dataplane import keys
from htcgrid.errors import ValidationError
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig, Settings

cloudpickle.register_pickle_by_value(sys.modules[__name__])
FAST = Settings(heartbeat_seconds=0.2, lease_seconds=5.0)
GRIDS = [(kind, way) for kind in STORE_KINDS for way in ("direct", "http")]
pytestmark = pytest.mark.filterwarnings("ignore::htcgrid.NoAgentWarning")


@dataclass
class Grid:
    client: Client
    service: GridService  # the side the agents and the server share
    tmp: Path
    url: str | None = None  # the API's, over HTTP

    def runs(self, name: str) -> Path:
        path = self.tmp / f"{name}.runs"
        path.write_text("")
        return path


@pytest.fixture(scope="module", params=GRIDS, ids=[f"{k}-{w}" for k, w in GRIDS])
def grid(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Grid]:
    kind, way = request.param
    tmp = tmp_path_factory.mktemp(f"graph-{kind}-{way}")
    data_url = None if kind == "memory" else f"file://{tmp / 'blobs'}"
    with backend_url(kind, tmp) as url:
        server = None
        if way == "http":
            security = SecurityConfig(auth=False)
            server = APIServer(url, data_url, FAST, bind("127.0.0.1", 0), security)
            server.start()
            client = htcgrid.connect(server.url)
            service = server.service
        else:
            client = htcgrid.connect(url, data_url=data_url)
            service = client._t.service  # type: ignore[attr-defined]
        worker = WorkerConfig("graph_handlers.handle", (HERE,))
        with running(Agent(service.store, service.data, FAST, worker, 2)):
            yield Grid(client, service, tmp, server.url if server is not None else None)
        client.close()
        if server is not None:
            server.stop()


def task(name: str, value: int = 0, **more: Any) -> dict[str, Any]:
    return {"name": name, "value": value, **more}


def outputs(session: Session) -> list[Any]:
    return session.outputs(timeout=120)


def test_a_diamond_passes_outputs_in_the_order_deps_were_named(grid: Grid) -> None:
    tasks = [task("a", 1), task("b", 10), task("c", 100), task("d", 1000)]
    done = outputs(grid.client.submit(tasks, deps=[None, [0], [0], [2, 1]]))
    assert [o["total"] for o in done] == [1, 11, 101, 1112]
    assert done[3]["seen"] == ["c", "b"] and done[1]["seen"] == ["a"]
    assert all(o["in_event"] for o in done[1:])


def test_a_chain_runs_link_after_link(grid: Grid) -> None:
    n = 12
    deps = [None] + [[i - 1] for i in range(1, n)]
    done = outputs(grid.client.submit([task(f"t{i}", 1) for i in range(n)], deps=deps))
    assert [o["total"] for o in done] == list(range(1, n + 1))


def test_fan_out_and_fan_in(grid: Grid) -> None:
    width = 80  # past READ_AHEAD_FROM: the sink reads its inputs from the results
    tasks = [task("root", 1)] + [task(f"m{i}", i) for i in range(width)] + [task("sink")]
    deps = [None] + [[0]] * width + [list(range(width, 0, -1))]
    done = outputs(grid.client.submit(tasks, deps=deps))
    assert done[-1]["seen"] == [f"m{i}" for i in range(width - 1, -1, -1)]
    assert done[-1]["total"] == sum(1 + i for i in range(width))


def test_a_failure_fails_its_dependents_transitively_without_running_them(grid: Grid) -> None:
    runs = grid.runs("failure")
    tasks = [task(n, runs=str(runs)) for n in ("a", "b", "c", "d", "e")]
    tasks[0]["fail"] = True
    session = grid.client.submit(tasks, deps=[None, [0], [1], None, [3]])
    results = session.results(timeout=120)
    states = [r.state for r in results]
    assert states == [TaskState.FAILED] * 3 + [TaskState.FINISHED] * 2
    a, b = session.task_ids[:2]
    assert results[1].error == {
        "type": "DependencyFailed",
        "message": f"dependency {a} failed",
        "traceback": "",
    }
    assert results[2].error is not None and results[2].error["message"] == f"dependency {b} failed"
    assert [r.attempts for r in results[1:3]] == [0, 0]
    assert sorted(runs.read_text().split()) == ["a", "d", "e"]


def test_a_cancelled_dependency_fails_its_dependents(grid: Grid) -> None:
    runs, gate = grid.runs("cancel"), grid.tmp / "cancel.gate"
    tasks = [task("a", op="wait_file", path=str(gate)), task("b"), task("c"), task("d")]
    for t in tasks:
        t["runs"] = str(runs)
    session = grid.client.submit(tasks, deps=[None, [0], [1], [0]])
    until(lambda: "a" in runs.read_text(), 60, "task a to start")
    grid.service.store.cancel_tasks(session.id, [1], grid.service.clock())
    gate.touch()
    results = session.results(timeout=120)
    assert [r.state for r in results] == [
        TaskState.FINISHED,
        TaskState.CANCELLED,
        TaskState.FAILED,
        TaskState.FINISHED,
    ]
    assert results[2].error is not None
    assert results[2].error["message"] == f"dependency {session.id}_1 cancelled"
    assert sorted(runs.read_text().split()) == ["a", "d"]


def test_a_task_may_depend_on_a_task_of_an_earlier_session(grid: Grid) -> None:
    first = grid.client.submit([task("a", 2), task("b", 3)])
    later = grid.client.submit(
        [task("c", 5), task("d", 7)], deps=[[first.task_ids[1]], [0, first.task_ids[0]]]
    )
    done = outputs(later)
    assert [o["total"] for o in done] == [8, 17]
    assert done[1]["seen"] == ["c", "a"]


def test_big_outputs_travel_by_reference(grid: Grid) -> None:
    size = Settings().inline_limit_bytes * 2
    tasks = [{"op": "big", "name": "x", "size": size}, {"op": "big", "name": "y", "size": 10}]
    done = outputs(grid.client.submit([*tasks, {"op": "big"}], deps=[None, None, [0, 1]]))
    assert done[2] == {"sizes": [size, 10]}


def test_many_small_inputs_travel_as_one_bundle(grid: Grid) -> None:
    """Eight outputs of 40 KiB each stay inline in the store, but together they pass the
    pipe's budget: the agent bundles them on the data plane (memory://: inline after all)."""
    size = 40 * 1024
    tasks: list[Any] = [{"op": "big", "name": f"p{i}", "size": size} for i in range(8)]
    session = grid.client.submit([*tasks, {"op": "big"}], deps=[None] * 8 + [list(range(8))])
    assert outputs(session)[8] == {"sizes": [size] * 8}
    if grid.service.data.url != "memory://":
        attempt = grid.client.task(session.task_ids[8])["attempts"]
        assert grid.service.data.get(keys.task_inputs(session.id, 8, attempt)).startswith(b"[{")


def test_events_that_are_not_objects_or_hold_inputs_stay_as_sent(grid: Grid) -> None:
    events: list[Any] = [{"op": "echo", "n": 1}, [1, 2], {"op": "echo", "inputs": "mine"}]
    done = outputs(grid.client.submit(events, deps=[None, [0], [0]]))
    assert done[1]["event"] == [1, 2] and done[1]["inputs"] == [done[0]]
    assert done[2]["event"] == {"op": "echo", "inputs": "mine"}


@pytest.mark.parametrize(
    ("deps", "message"),
    [
        (
            [[1], [2], [0]],
            "the dependencies form a cycle: task 0 needs task 1 needs task 2 needs task 0",
        ),
        ([None, [1], None], "task 1 depends on itself"),
        ([None, [3], None], "task 1: dependency 3 is not a task of this session (indexes 0 to 2)"),
        ([None, None, ["nosuch_0"]], "task 2: unknown dependency nosuch_0"),
        ([None, None, ["x y"]], "task 2: unknown dependency 'x y'"),
        ([None, [True], None], "task 1: a dependency is a task index or a task id, not True"),
        ([None, 1, None], "task 1: deps must be a list of task indexes or task ids"),
        ([None], "deps needs one entry per task (a list, or null for none)"),
    ],
)
def test_a_bad_graph_is_refused_whole_with_one_line(grid: Grid, deps: Any, message: str) -> None:
    before = len(grid.client.sessions(limit=1000))
    with pytest.raises(ValidationError) as refused:
        grid.client.submit([task("a"), task("b"), task("c")], deps=deps)
    assert str(refused.value) == message
    assert len(grid.client.sessions(limit=1000)) == before


def inc(x: int) -> int:
    return x + 1


def plus(a: int, b: int, *, c: int = 0) -> int:
    return a + b + c


def test_executor_futures_as_arguments_become_edges(grid: Grid) -> None:
    with htcgrid.Executor(client=grid.client, batch_seconds=0.05) as ex:
        a = ex.submit(inc, 1)
        b = ex.submit(inc, a)
        c = ex.submit(plus, a, b, c=ex.submit(inc, 10))
        assert (a.result(120), b.result(120), c.result(120)) == (2, 3, 16)
        later = ex.submit(plus, c, c)  # a future of a session sent before: by task id
        assert later.result(120) == 32


def test_a_graph_uploaded_in_parts(grid: Grid, monkeypatch: pytest.MonkeyPatch) -> None:
    from htcgrid.client import upload

    monkeypatch.setattr(upload, "SINGLE_REQUEST_TASKS", 4)
    monkeypatch.setattr(upload, "PART_TASKS", 3)
    n = 10
    deps = [None] + [[i - 1, 0] for i in range(1, n)]
    done = outputs(grid.client.submit((task(f"t{i}", 1) for i in range(n)), deps=deps))
    assert [o["total"] for o in done] == [1 + 2 * i for i in range(n)]
    with pytest.raises(ValidationError, match=r"^the dependencies form a cycle"):
        grid.client.submit([task(f"t{i}") for i in range(n)], deps=[[n - 1], *deps[1:]])


def test_over_http_a_bad_graph_is_a_400_with_the_same_words(grid: Grid) -> None:
    if grid.url is None:
        pytest.skip("the HTTP answer itself")
    body = {"tasks": [1, 2], "deps": [[1], [0]]}
    answer = httpx.post(f"{grid.url}/v1/sessions", json=body, timeout=30)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "the dependencies form a cycle: task 0 needs task 1 needs task 0"
    )


def test_the_command_line_takes_a_deps_file(tmp_path: Path) -> None:
    import json
    import subprocess

    url = f"sqlite://{tmp_path / 'grid.db'}"
    (tmp_path / "tasks.jsonl").write_text("\n".join(json.dumps(task(n, 1)) for n in "abc"))
    (tmp_path / "deps.jsonl").write_text("null\n[0]\n[1, 0]\n")
    client = htcgrid.connect(url)
    service = client._t.service  # type: ignore[attr-defined]
    worker = WorkerConfig("graph_handlers.handle", (HERE,))
    with running(Agent(service.store, service.data, FAST, worker, 1)):
        command = [sys.executable, "-m", "htcgrid", "submit", str(tmp_path / "tasks.jsonl"),
                   "--deps", str(tmp_path / "deps.jsonl"), "--url", url, "--wait", "--json"]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    client.close()
    rows = [json.loads(line) for line in done.stdout.splitlines()]  # JSON lines, one a task
    assert [r["output"]["total"] for r in rows] == [1, 2, 4]


def test_an_in_process_client_waiting_for_a_graph_releases_it(tmp_path: Path) -> None:
    """The process that submitted a graph is gone; another one that waits for it (an
    in-process ``htcgrid wait``, say) runs the releaser while it waits."""
    url = f"sqlite://{tmp_path / 'grid.db'}"
    submitter = htcgrid.connect(url)
    session_id = submitter.submit([task("a", 1), task("b", 2)], deps=[None, [0]]).id
    submitter.close()  # its releaser stops with it
    waiter = htcgrid.connect(url)
    service = waiter._t.service  # type: ignore[attr-defined]
    worker = WorkerConfig("graph_handlers.handle", (HERE,))
    with running(Agent(service.store, service.data, FAST, worker, 1)):
        done = waiter.session(session_id).outputs(timeout=120)
    waiter.close()
    assert [o["total"] for o in done] == [1, 3]
