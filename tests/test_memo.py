"""Memoization end to end, on every backend, over HTTP and in process: a session submitted with
``cache`` is answered from the outputs of an earlier session of the same owner without running
(the handler notes every run in a file), but runs for another owner, a new function version, an
answer older than its TTL, or an input that failed; deleting and purging leave no record."""

from __future__ import annotations

import contextlib
import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from backends import backend_url
from click.testing import CliRunner
from fastapi.testclient import TestClient
from procs import until
from sample_handlers_path import HERE

from htcgrid import Client, ValidationError, memo
from htcgrid.agent.agent import Agent
from htcgrid.agent.packages import PackageCache
from htcgrid.agent.worker import WorkerConfig
from htcgrid.api import create_app
from htcgrid.backends import open_grid
from htcgrid.cli import main
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import HTTPTransport
from htcgrid.models import MAX_RETENTION_SECONDS
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=5.0, inline_limit_bytes=1024)
pytestmark = pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning")


class Clock:
    """The agent's clock, moved forward by tests that age the recorded answers."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Grid:
    service: GridService
    clock: Clock
    runs: Path  # the handler's notes: one line per run

    def ran(self) -> list[str]:
        return self.runs.read_text().split() if self.runs.exists() else []

    def events(self, xs: range | list[int], **extra: Any) -> list[dict[str, Any]]:
        return [{"log": str(self.runs), "x": x, **extra} for x in xs]

    def results(self, session_id: str) -> list[Any]:
        until(lambda: self.service.session(session_id).complete, 60, f"session {session_id}")
        return sorted(self.service.results(session_id, 0, 10_000).results, key=lambda r: r.index)

    def submit(self, tasks: list[Any], owner: str = "", **options: Any) -> str:
        request = SubmitRequest(tasks=tasks, **options)
        return self.service.submit(request, owner).session_id

    def recorded(self, session_id: str, count: int) -> None:
        """Wait until ``count`` answers of the session are recorded: the agent records them
        once the store took its results, so a client may see the session end first."""

        def mine() -> int:
            found = self.service.store.list_meta(memo.PREFIX).values()
            return sum(v.startswith(f"{session_id}_") for v in found)

        until(lambda: mine() >= count, 60, f"{count} answers of {session_id}")

    def ran_then_recorded(self, tasks: list[Any], owner: str = "", **options: Any) -> list[Any]:
        """Submit, wait for the results and for the answers they give to be recorded."""
        session_id = self.submit(tasks, owner, **options)
        results = self.results(session_id)
        ran = sum(r.state.value == "finished" and not r.cached for r in results)
        self.recorded(session_id, ran)  # only a run records its answer
        return results


@pytest.fixture
def grid(store_url: str, tmp_path: Path) -> Iterator[Grid]:
    with contextlib.ExitStack() as stack:
        data_url = None
        if store_url.startswith("aws:"):  # the AWS store keeps no blobs: S3 beside it
            data_url = stack.enter_context(backend_url("s3", tmp_path, "data"))
        store, data = open_grid(store_url, data_url)
        stack.callback(store.close)
        stack.callback(data.close)
        service = GridService(store, data, FAST)
        clock = Clock()
        worker = WorkerConfig("memo_handlers.logged", (HERE,))
        packages = PackageCache(service.functions, tmp_path / "packages", worker, refresh_seconds=0)
        agent = Agent(store, data, FAST, worker, 2, packages=packages, clock=clock)
        stack.enter_context(running(agent))
        yield Grid(service, clock, tmp_path / "runs.txt")


@contextlib.contextmanager
def client_of(grid: Grid, via: str) -> Iterator[Client]:
    if via == "process":
        yield Client(DirectTransport.of(grid.service))
        return
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    with TestClient(create_app(grid.service)) as http:
        transport.http = http
        yield Client(transport)


def memo_records(grid: Grid) -> dict[str, str]:
    store = grid.service.store
    return {**store.list_meta(memo.PREFIX), **store.list_meta(memo.INDEX_PREFIX)}


@pytest.mark.parametrize("via", ["process", "http"])
def test_a_second_session_is_answered_from_the_cache(grid: Grid, via: str) -> None:
    with client_of(grid, via) as client:
        first = client.submit(grid.events(range(4)), cache=True)
        assert [r.output["twice"] for r in first.results(timeout=60)] == [0, 2, 4, 6]
        assert sorted(grid.ran()) == ["0", "1", "2", "3"]
        grid.recorded(first.id, 4)

        second = client.submit(grid.events(range(6)), cache=True)
        results = second.results(timeout=60)
        assert [r.output["twice"] for r in results] == [0, 2, 4, 6, 8, 10]
        assert [r.cached for r in results] == [True] * 4 + [False] * 2
        assert sorted(grid.ran()) == ["0", "1", "2", "3", "4", "5"]  # only the new inputs ran
        detail = client.task(results[0].task_id)
        assert detail["cached"] is True and detail["state"] == "finished"
        assert client.task(results[5].task_id).get("cached") is False

        plain = client.submit(grid.events(range(2)))  # without cache: runs, records nothing
        assert not any(r.cached for r in plain.results(timeout=60))
        assert len(grid.ran()) == 8


def test_the_cache_is_per_owner_per_function_version_and_never_of_failures(grid: Grid) -> None:
    grid.ran_then_recorded(grid.events(range(2)), owner="alice", cache=True)
    other_owner = grid.submit(grid.events(range(2)), owner="bob", cache=True)
    assert not any(r.cached for r in grid.results(other_owner))
    assert len(grid.ran()) == 4

    failing = grid.events([7], fail=True)
    for _ in range(2):
        (failed,) = grid.results(grid.submit(failing, owner="alice", cache=True))
        assert failed.state.value == "failed" and not failed.cached
    assert grid.ran().count("7") == 2  # a failure is never an answer

    grid.service.functions.deploy("priced", package(1), "memo_pkg.logged")
    events = grid.events(range(2))
    for _ in range(2):
        grid.ran_then_recorded(events, owner="alice", function="priced", cache=True)
    assert len(grid.ran()) == 8  # the second session of v1 ran nothing
    grid.service.functions.deploy("priced", package(2), "memo_pkg.logged")
    rerun = grid.results(grid.submit(events, owner="alice", function="priced", cache=True))
    assert [r.cached for r in rerun] == [False, False] and len(grid.ran()) == 10
    assert {json.loads(r.output)["version"] for r in rerun} == {2}


def package(version: int) -> bytes:
    source = (
        (Path(HERE) / "memo_handlers.py").read_text().replace("VERSION = 1", f"VERSION = {version}")
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("memo_pkg.py", source)
    return buffer.getvalue()


def test_an_answer_older_than_the_sessions_ttl_is_worked_out_again(grid: Grid) -> None:
    grid.ran_then_recorded(grid.events(range(2)), cache=True)
    grid.clock.offset = 600.0  # ten minutes later, by the agent's clock
    young = grid.ran_then_recorded(grid.events(range(2)), cache=3600)
    assert all(r.cached for r in young) and len(grid.ran()) == 2
    old = grid.ran_then_recorded(grid.events(range(2)), cache=300)
    assert not any(r.cached for r in old) and len(grid.ran()) == 4
    again = grid.results(grid.submit(grid.events(range(2)), cache=300))
    assert all(r.cached for r in again) and len(grid.ran()) == 4  # the new answers are young


def test_a_big_output_is_copied_so_deleting_its_session_keeps_the_answer(grid: Grid) -> None:
    events = grid.events([1], big=5000)  # over the inline limit: kept in the data plane
    first = grid.submit(events, cache=True)
    (original,) = grid.results(first)
    grid.recorded(first, 1)
    second = grid.submit(events, cache=True)
    (answer,) = grid.results(second)
    assert answer.cached and answer.output_ref and answer.output_ref != original.output_ref
    grid.service.delete(first)
    assert grid.service.task_output(answer.task_id) == b'"' + b"y" * 5000 + b'"'
    assert len(grid.ran()) == 1


def test_deleting_and_purging_sessions_leave_no_memo_record(grid: Grid) -> None:
    first = grid.ran_then_recorded(grid.events(range(3)), cache=True)[0].session_id
    second = grid.ran_then_recorded(grid.events(range(2)), cache=True)[0].session_id
    other = grid.ran_then_recorded(grid.events(range(5, 7)), cache=True)[0].session_id
    assert len(grid.service.store.list_meta(memo.PREFIX)) == 5

    grid.service.delete(second)  # answered from the cache: it recorded nothing
    assert len(grid.service.store.list_meta(memo.PREFIX)) == 5
    grid.service.delete(other)
    answers = grid.service.store.list_meta(memo.PREFIX)
    assert len(answers) == 3 and all(v.startswith(f"{first}_") for v in answers.values())
    assert grid.service.purge(older_than_seconds=0) == [first]
    assert memo_records(grid) == {}
    third = grid.submit(grid.events(range(3)), cache=True)
    assert not any(r.cached for r in grid.results(third)) and len(grid.ran()) == 8


def test_the_cache_option_is_checked() -> None:
    service = GridService(*open_grid("memory://"))
    for bad in (0, -1, "yes", float("inf"), 1e12):
        with pytest.raises(ValidationError, match="cache must be true, false or a number"):
            service.submit(SubmitRequest(tasks=[1], cache=bad))
    for given, stored in ((True, MAX_RETENTION_SECONDS), (False, None), (90, 90.0), (None, None)):
        sid = service.submit(SubmitRequest(tasks=[1], cache=given)).session_id
        assert service.session(sid).spec.cache_seconds == stored


def test_the_cache_option_over_http_and_on_the_command_line(tmp_path: Path) -> None:
    service = GridService(*open_grid("memory://"))
    with TestClient(create_app(service)) as http:
        bad = http.post("/v1/sessions", json={"tasks": [1], "cache": 0})
        assert bad.status_code == 400
        assert "cache must be true, false or a number" in bad.json()["error"]["message"]
        good = http.post("/v1/sessions", json={"tasks": [1], "cache": 90})
        assert service.session(good.json()["session_id"]).spec.cache_seconds == 90.0

    url = f"sqlite://{tmp_path / 'grid.db'}"
    for given, stored in ((["--cache"], MAX_RETENTION_SECONDS), (["--cache", "2h"], 7200.0)):
        answer = CliRunner().invoke(main, ["submit", "-", "--url", url, *given], input="[1]")
        assert answer.exit_code == 0, answer.output
        store, _ = open_grid(url)
        assert store.get_session(answer.output.split()[-1]).spec.cache_seconds == stored  # type: ignore[union-attr]
        store.close()
