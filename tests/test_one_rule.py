"""Each rule of a submit is written once, in the service: the HTTP API and the in-process
client give the same answer, and a client that says nothing gets the grid's defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import htcgrid
from htcgrid.api import create_app
from htcgrid.client import Client
from htcgrid.client.direct import DirectTransport
from htcgrid.client.http import HTTPTransport
from htcgrid.dataplane import keys, open_data_plane
from htcgrid.errors import GridError, PayloadTooLarge, UnknownFunction, ValidationError
from htcgrid.models import ErrorInfo, Outcome, TaskState, after_lease_expired
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.store import open_store
from htcgrid.wire import result_dict, results_json

SETTINGS = Settings(
    max_attempts=3, task_timeout_seconds=60.0, max_tasks_per_submit=4, max_payload_bytes=100
)


def http_client(service: GridService) -> Client:
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    transport.http = TestClient(create_app(service, security=SecurityConfig()))
    return Client(transport)


def direct_client(service: GridService) -> Client:
    return Client(DirectTransport.of(service))


@pytest.fixture(params=[http_client, direct_client], ids=["http", "in-process"])
def grid(request: pytest.FixtureRequest) -> Iterator[tuple[Client, GridService]]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"), SETTINGS)
    client = request.param(service)
    yield client, service
    client.close()


def test_a_client_that_names_no_defaults_gets_the_grids(
    grid: tuple[Client, GridService],
) -> None:
    client, service = grid
    session = client.submit([1, 2])
    spec = service.session(session.id).spec
    assert (spec.max_attempts, spec.timeout_seconds) == (3, 60.0)
    chosen = client.submit([1], max_attempts=5, timeout_seconds=7.5)
    spec = service.session(chosen.id).spec
    assert (spec.max_attempts, spec.timeout_seconds) == (5, 7.5)


def test_the_python_client_sends_no_defaults_of_its_own() -> None:
    sent: list[dict[str, Any]] = []

    class Recorder(DirectTransport):
        def submit(self, body: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
            sent.append(body)
            return super().submit(body, wait)

    service = GridService(open_store("memory://"), open_data_plane("memory://"), SETTINGS)
    with Client(Recorder.of(service)) as client:
        client.submit([1])
    assert "max_attempts" not in sent[0] and "timeout_seconds" not in sent[0]


BAD_SUBMITS: list[tuple[str, dict[str, Any], type[GridError]]] = [
    ("no tasks", {"tasks": []}, ValidationError),
    ("more tasks than the grid takes", {"tasks": [0] * 5}, PayloadTooLarge),
    ("a task over the payload limit", {"tasks": ["x" * 200]}, PayloadTooLarge),
    ("priority above 9", {"tasks": [0], "priority": 10}, ValidationError),
    ("priority not a number", {"tasks": [0], "priority": "high"}, ValidationError),
    ("no attempts", {"tasks": [0], "max_attempts": 0}, ValidationError),
    ("too many attempts", {"tasks": [0], "max_attempts": 101}, ValidationError),
    ("a timeout of zero", {"tasks": [0], "timeout_seconds": 0}, ValidationError),
    ("a timeout over a week", {"tasks": [0], "timeout_seconds": 8 * 86400}, ValidationError),
    ("a function name with a space", {"tasks": [0], "function": "a b"}, ValidationError),
    ("a function never deployed", {"tasks": [0], "function": "pricing"}, UnknownFunction),
    ("one priority for two tasks", {"tasks": [0, 1], "task_priorities": [1]}, ValidationError),
    ("a session id with a slash", {"tasks": [0], "session_id": "a/b"}, ValidationError),
]


@pytest.mark.parametrize(
    "body, error", [case[1:] for case in BAD_SUBMITS], ids=[case[0] for case in BAD_SUBMITS]
)
def test_a_bad_submit_gets_one_answer_on_every_path(
    grid: tuple[Client, GridService], body: dict[str, Any], error: type[GridError]
) -> None:
    client, service = grid
    with pytest.raises(GridError) as raised:
        client._t.submit(body)
    assert type(raised.value) is error
    assert raised.value.status == error.status
    assert service.sessions() == []


def test_a_result_has_one_shape_on_every_path(grid: tuple[Client, GridService]) -> None:
    """A finished task, a failed one and one whose output lives in the data plane: the page
    a client reads is ``result_dict`` of each, whichever way it came."""
    client, service = grid
    session = client.submit([0, 1, 2])
    leases = sorted(service.store.claim("a", 3, 60, service.clock()), key=lambda x: x.index)
    big = keys.task_output(session.id, 2, leases[2].attempt)
    service.data.put(big, b'{"big": true}')
    outcomes = [
        Outcome(leases[0].task_id, leases[0].attempt, TaskState.FINISHED, output=b'{"n": 1}'),
        Outcome(
            leases[1].task_id,
            leases[1].attempt,
            TaskState.FAILED,
            error=ErrorInfo("ValueError", "bad", "Traceback ..."),
        ),
        Outcome(leases[2].task_id, leases[2].attempt, TaskState.FINISHED, output_ref=big),
    ]
    assert service.store.complete("a", outcomes, service.clock()) == [True, True, True]
    page = client._t.results(session.id, 0, 10, 0)
    expected = service.results(session.id)
    assert page == json.loads(results_json(expected))
    assert page["results"] == [result_dict(r) for r in expected.results]
    assert page["results"][1]["error"] == {
        "type": "ValueError",
        "message": "bad",
        "traceback": "Traceback ...",
    }
    assert [r.output for r in session.results()] == [{"n": 1}, None, {"big": True}]


def test_both_settings_read_the_environment_the_same_way() -> None:
    environ = {"HTCGRID_MAX_ATTEMPTS": "4", "HTCGRID_RATE_LIMIT_BURST": "7", "HTCGRID_AUTH": "0"}
    assert Settings.from_env(environ).max_attempts == 4
    security = SecurityConfig.from_env(environ)
    assert (security.rate_limit_burst, security.auth) == (7, True)
    assert Settings.from_env.__func__ is SecurityConfig.from_env.__func__  # type: ignore[attr-defined]


RETRY_RULE = re.compile(
    r"attempt\w*\s*(<|>=)\s*[\w.]*max_attempts|max_attempts\s*(>|<=)\s*[\w.]*attempt"
)


def test_the_retry_rule_has_one_python_copy() -> None:
    """The stores apply ``models.after_lease_expired``; only Lua and DynamoDB's conditions
    state the rule again, in their own language."""
    package = Path(htcgrid.__file__).parent
    copies = [
        path.relative_to(package).as_posix()
        for path in sorted(package.rglob("*.py"))
        if RETRY_RULE.search(path.read_text())
    ]
    assert copies == ["models.py"]


@pytest.mark.parametrize("attempt, state", [(1, TaskState.PENDING), (3, TaskState.FAILED)])
def test_an_expired_lease_runs_again_while_attempts_are_left(
    attempt: int, state: TaskState
) -> None:
    outcome = after_lease_expired("s/0", attempt, 3)
    assert outcome.state is state
    assert (outcome.error is None) is (state is TaskState.PENDING)


def test_a_postgresql_pool_is_set_up_in_one_place() -> None:
    package = Path(htcgrid.__file__).parent
    places = [
        path.relative_to(package).as_posix()
        for path in sorted(package.rglob("*.py"))
        if "ConnectionPool(" in path.read_text()
    ]
    assert places == ["store/postgres_migrations.py"]
