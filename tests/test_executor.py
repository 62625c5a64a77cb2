"""``htcgrid.Executor`` in process (memory and SQLite stores, and every backend for the basic
path), with an agent on a thread beside it: futures, map, exceptions, cancel, batching, the
named-function path, version checks and who may send pickled code."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from backends import backend_url
from click.testing import CliRunner
from sample_handlers_path import HERE

import htcgrid
from htcgrid import pickled
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.auth.principals import Authenticator
from htcgrid.cli import main
from htcgrid.client.executor import runtime_info
from htcgrid.client.session import Client
from htcgrid.errors import Forbidden, RuntimeMismatch, ValidationError
from htcgrid.presence import AgentInfo
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a user's own script travels
FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0)


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


class Rejected(Exception):
    """A user's own exception class: it comes back as itself."""


def refuse(x: int) -> int:
    raise Rejected(f"no {x}")


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def service_of(client: Client) -> GridService:
    return client._t.service  # type: ignore[attr-defined, no-any-return]


def start_agent(client: Client) -> Callable[[], None]:
    service = service_of(client)
    runner = Agent(
        service.store, service.data, FAST, WorkerConfig("sample_handlers.echo", (HERE,)), 2
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    until(lambda: bool(runtime_info(client)["agents"]))  # seen: no NoAgentWarning

    def stop() -> None:
        runner.stop()
        thread.join(timeout=30)

    return stop


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def grid(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """One grid and agent per backend for the module: each test looks at its own sessions."""
    with backend_url(request.param, tmp_path_factory.mktemp("grid")) as url:
        client = htcgrid.connect(url)
        stop = start_agent(client)
        yield client
        stop()
        client.close()


def sessions_made(grid: Client, run: Callable[[], object]) -> list[dict[str, Any]]:
    """The sessions ``run`` made on ``grid``."""
    before = {s["session_id"] for s in grid.sessions(limit=1000)}
    run()
    return [s for s in grid.sessions(limit=1000) if s["session_id"] not in before]


def until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_submit_runs_a_python_callable_with_its_arguments(grid: Client) -> None:
    with htcgrid.Executor(client=grid) as executor:
        assert executor.submit(square, 12).result(30) == 144
        assert executor.submit(add, 1, 2, c=3).result(30) == 6
        offset = 100
        assert executor.submit(lambda x: x + offset, 1).result(30) == 101  # a closure, by value


def test_map_keeps_order_and_chunksize_batches_calls_into_tasks(grid: Client) -> None:
    def run() -> None:
        with htcgrid.Executor(client=grid, batch_seconds=0.5) as executor:
            assert list(executor.map(add, range(100), range(100), chunksize=10)) == [
                2 * i for i in range(100)
            ]

    assert sum(s["task_count"] for s in sessions_made(grid, run)) == 10  # 100 calls, 10 tasks


def test_an_exception_comes_back_as_itself_with_the_remote_traceback(grid: Client) -> None:
    with htcgrid.Executor(client=grid) as executor:
        future = executor.submit(refuse, 7)
        with pytest.raises(Rejected, match="no 7") as caught:
            future.result(30)
    cause = caught.value.__cause__
    assert isinstance(cause, pickled.RemoteTraceback)
    assert "in refuse" in cause.text and pickled.NOTE_PREFIX not in cause.text
    assert not getattr(caught.value, "__notes__", None)
    assert isinstance(future.exception(), Rejected)


def test_an_exception_that_cannot_travel_pickled_keeps_its_type_name_and_message() -> None:
    error = {"type": "OddError", "message": "strange", "traceback": "Traceback …\nOddError"}
    rebuilt = pickled.rebuild_exception(error)
    assert isinstance(rebuilt, pickled.RemoteException)
    assert str(rebuilt) == "OddError: strange"
    assert "Traceback" in str(rebuilt.__cause__)


def test_futures_work_with_as_completed_and_wait(grid: Client) -> None:
    with htcgrid.Executor(client=grid) as executor:
        futures = [executor.submit(square, i) for i in range(40)]
        assert sorted(f.result() for f in cf.as_completed(futures, timeout=30)) == [
            i * i for i in range(40)
        ]
        done, not_done = cf.wait([executor.submit(square, 3)], timeout=30)
        assert len(done) == 1 and not not_done


def test_calls_made_together_travel_as_few_sessions(grid: Client) -> None:
    def run() -> None:
        with htcgrid.Executor(client=grid, batch_seconds=0.2) as executor:
            futures = [executor.submit(square, i) for i in range(1000)]
            assert [f.result(60) for f in futures] == [i * i for i in range(1000)]

    assert 1 <= len(sessions_made(grid, run)) <= 5


def test_cancel_of_a_lone_call_cancels_its_task_on_the_grid(grid: Client) -> None:
    with htcgrid.Executor(client=grid, batch_seconds=0.0) as executor:
        future = executor.submit(nap, 30)
        until(lambda: future.session_id is not None)  # type: ignore[attr-defined]
        assert future.cancel() and future.cancelled()
        session = grid.session(future.session_id)  # type: ignore[attr-defined]
        until(lambda: session.status()["counts"]["cancelled"] == 1)
        assert cf.wait([future], timeout=1).done == {future}


def test_shutdown_cancel_futures_cancels_what_is_not_done(grid: Client) -> None:
    executor = htcgrid.Executor(client=grid, batch_seconds=0.0)
    futures = [executor.submit(nap, 30) for _ in range(3)]
    until(lambda: all(f.session_id for f in futures))  # type: ignore[attr-defined]
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futures)
    for session_id in {f.session_id for f in futures}:  # type: ignore[attr-defined]
        until(lambda sid=session_id: grid.session(sid).status()["complete"])
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 1)


def test_a_named_function_takes_events_through_client_submit(grid: Client) -> None:
    def run() -> None:
        with htcgrid.Executor(client=grid, function="default") as executor:
            assert list(executor.map([{"a": 1}, 2, "three"])) == [{"a": 1}, 2, "three"]
            assert executor.submit({"x": 1}).result(30) == {"x": 1}
            with pytest.raises(TypeError, match="one event"):
                executor.submit({"x": 1}, 2)

    assert {s["function"] for s in sessions_made(grid, run)} == {"default"}


def test_a_callable_that_cannot_be_pickled_is_refused_at_submit(grid: Client) -> None:
    lock = threading.Lock()
    with htcgrid.Executor(client=grid) as executor, pytest.raises(ValidationError, match="pickled"):
        executor.submit(lambda: lock)


# ---- versions --------------------------------------------------------------------------


def _fake_agent(client: Client, python: str) -> None:
    now = time.time()
    info = AgentInfo(
        "old-agent",
        "old-host",
        1,
        1,
        None,
        "0",
        now,
        now,
        {"python": python, "cloudpickle": "3.1.0"},
    )
    service_of(client).store.put_meta("agents/old-agent", json.dumps(info.as_dict()))


def test_agents_report_their_python_and_cloudpickle(grid: Client) -> None:
    until(lambda: bool(runtime_info(grid)["agents"]))
    agents = runtime_info(grid)["agents"]
    assert agents[0]["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert agents[0]["cloudpickle"] == cloudpickle.__version__


def test_a_python_version_no_agent_runs_is_refused_at_submit(tmp_path: Path) -> None:
    client = htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}")
    _fake_agent(client, "3.99.1")
    with htcgrid.Executor(client=client) as executor:
        with pytest.raises(RuntimeMismatch, match=r"python 3\.\d+ here, 3\.99 there") as caught:
            executor.submit(square, 2)
        assert "old-host" in str(caught.value)
    assert client.sessions() == []
    client.close()


def test_a_worker_refuses_a_call_pickled_by_another_python() -> None:
    event = pickled.call_event(
        pickled.b64(pickled.dumps(square)),
        [((2,), {})],
        {"python": "2.7.18", "cloudpickle": cloudpickle.__version__},
    )
    with pytest.raises(RuntimeError, match=r"python 2\.7 here, 3\.\d+ there"):
        pickled.lambda_handler(event, None)
    event = pickled.call_event(
        pickled.b64(pickled.dumps(square)), [((2,), {})], pickled.local_versions()
    )
    assert pickled.read_results(pickled.lambda_handler(event, None)) == [4]


# ---- who may send pickled code ----------------------------------------------------------


def test_pickled_code_needs_a_role_that_permits_it(tmp_path: Path) -> None:
    service = htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}")._t.service  # type: ignore[attr-defined]
    auth = Authenticator(service.data)
    auth.add_user("alice", "a long password", "user")
    auth.add_user("dora", "a long password", "deployer")
    request = SubmitRequest(tasks=[1], function=pickled.PYTHON_FUNCTION)
    with pytest.raises(Forbidden, match="'alice' may not submit pickled Python code"):
        service.submit(request, owner="alice")
    assert service.submit(request, owner="dora").created
    assert service.submit(request, owner="").created  # in process: the backends' holder
    assert service.submit(SubmitRequest(tasks=[1]), owner="alice").created  # named: as before
    service.pickled.set_policy("all")
    assert service.submit(request, owner="alice").created
    service.pickled.set_policy("off")
    for owner in ("alice", "dora", ""):
        with pytest.raises(Forbidden, match="refuses pickled Python code"):
            service.submit(request, owner=owner)
    with pytest.raises(ValidationError, match="must be one of"):
        service.pickled.set_policy("sometimes")


def test_an_executor_is_told_at_submit_when_the_grid_refuses_pickled_code(grid: Client) -> None:
    service_of(grid).pickled.set_policy("off")
    try:
        with (
            htcgrid.Executor(client=grid) as executor,
            pytest.raises(Forbidden, match="setting: off"),
        ):
            executor.submit(square, 2)
    finally:
        service_of(grid).pickled.set_policy("role")


def test_the_built_in_name_cannot_be_deployed(grid: Client) -> None:
    with pytest.raises(ValidationError, match="built in"):
        service_of(grid).functions.deploy(pickled.PYTHON_FUNCTION, b"", "m.f")


# ---- every backend ------------------------------------------------------------------------


def test_submit_and_map_on_every_backend(store_url: str, tmp_path: Path) -> None:
    """The executor only uses submit, results and cancel: the same calls on every store."""
    if store_url.startswith(("memory:", "sqlite:")):
        pytest.skip("the module's grid fixture runs every test on this store")
    with contextlib.ExitStack() as stack:
        data = None
        if store_url.startswith("aws:"):  # the AWS store keeps no blobs: S3 beside it
            data = stack.enter_context(backend_url("s3", tmp_path, "data"))
        _submit_and_map(htcgrid.connect(store_url, data_url=data))


def _submit_and_map(client: Client) -> None:
    stop = start_agent(client)
    try:
        with htcgrid.Executor(client=client) as executor:
            assert executor.submit(square, 9).result(60) == 81
            assert list(executor.map(square, range(20), chunksize=3)) == [i * i for i in range(20)]
            with pytest.raises(Rejected):
                executor.submit(refuse, 1).result(60)
    finally:
        stop()
        client.close()


# ---- the admin's command ------------------------------------------------------------------


def test_the_pickled_code_command_shows_and_sets_the_setting(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    htcgrid.connect(url).close()
    run = CliRunner().invoke
    shown = run(main, ["pickled-code", "--url", url], catch_exceptions=False)
    assert shown.exit_code == 0 and "role (only admins and deployers); you may" in shown.output
    assert "off (nobody); you may not" in run(main, ["pickled-code", "off", "--url", url]).output
    client = htcgrid.connect(url)
    assert service_of(client).pickled.policy() == "off"
    client.close()
    assert run(main, ["pickled-code", "sometimes", "--url", url]).exit_code == 2
