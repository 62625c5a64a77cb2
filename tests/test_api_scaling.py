"""``GET /v1/scaling``: the signal KEDA scales agent pods on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry
from htcgrid.scaling import running_tasks
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import SecurityConfig
from htcgrid.store import open_store

PASSWORD = "correct horse battery"
Grid = tuple[TestClient, GridService, dict[str, str]]


@pytest.fixture
def grid() -> Iterator[Grid]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("alice", PASSWORD, "user")
    token = auth.login("alice", PASSWORD).access_token
    app = create_app(service, auth=auth, security=SecurityConfig(rate_limit_per_second=0))
    yield TestClient(app), service, {"Authorization": f"Bearer {token}"}


def _submit(service: GridService, n: int, function: str = "default") -> None:
    service.submit(SubmitRequest(tasks=list(range(n)), function=function), owner="alice")


def test_an_empty_grid_wants_the_minimum(grid: Grid) -> None:
    http, _, who = grid
    answer = http.get("/v1/scaling", headers=who)
    assert answer.status_code == 200
    assert answer.json() == {
        "desired_agents": 1,
        "queue_depth": 0,
        "running": 0,
        "functions": {},
        "policy": {"min_agents": 1, "max_agents": 100, "target_backlog": 2.0, "slots_per_agent": 1},
    }


def test_desired_agents_follow_the_backlog_and_the_running_tasks(grid: Grid) -> None:
    http, service, who = grid
    FunctionRegistry(service.data).deploy("pricing", b"", "handler.f")
    _submit(service, 30)
    _submit(service, 11, "pricing")
    leases = service.store.claim("a1", 5, 10.0, service.clock(), functions=["default"])
    assert len(leases) == 5
    found = http.get("/v1/scaling", headers=who).json()
    assert found["queue_depth"] == 36 and found["running"] == 5
    assert found["functions"] == {"default": 25, "pricing": 11}
    assert found["desired_agents"] == 18  # ceil(36 / 2)
    query = {"min_agents": 0, "max_agents": 4, "slots_per_agent": 4}
    assert http.get("/v1/scaling", params=query, headers=who).json()["desired_agents"] == 4
    query = {"max_agents": 50, "target_backlog": 100, "slots_per_agent": 2}
    assert http.get("/v1/scaling", params=query, headers=who).json()["desired_agents"] == 3


def test_running_tasks_skip_complete_sessions_and_stop_at_the_cap(grid: Grid) -> None:
    _, service, _ = grid
    for _ in range(3):
        _submit(service, 2)
    service.store.claim("a1", 6, 10.0, service.clock())
    assert running_tasks(service.store) == 6
    assert running_tasks(service.store, max_sessions=1) == 2


@pytest.mark.parametrize(
    "query",
    [
        {"min_agents": -1},
        {"max_agents": 0},
        {"target_backlog": 0},
        {"slots_per_agent": "x"},
    ],
)
def test_a_bad_policy_is_a_400_in_one_line(grid: Grid, query: dict[str, object]) -> None:
    http, _, who = grid
    answer = http.get("/v1/scaling", params=query, headers=who)
    assert answer.status_code == 400
    assert "\n" not in answer.json()["error"]["message"]


def test_a_minimum_above_the_maximum_reads_as_the_maximum(grid: Grid) -> None:
    http, _, who = grid
    found = http.get("/v1/scaling", params={"min_agents": 9, "max_agents": 4}, headers=who).json()
    assert found["desired_agents"] == 4 and found["policy"]["min_agents"] == 4


def test_it_needs_a_caller(grid: Grid) -> None:
    http, _, _ = grid
    assert http.get("/v1/scaling").status_code == 401
