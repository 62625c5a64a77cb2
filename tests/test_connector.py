"""HTC-Grid's AWSConnector against a real `htcgrid up`: the exact shapes (dicts that are also
models), logins, API keys, timeouts, cancelling, unknown sessions, priorities, the data-plane
reader, the root logger, and a refreshed token that is actually used."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grid_process import GridProcess, htcgrid_up
from procs import until

import htcgrid
from htcgrid.api.server import APIServer, bind
from htcgrid.connector import AWSConnector, GridConnector, api_url
from htcgrid.errors import AuthError, ConfigurationError, NotFound, ValidationError
from htcgrid.settings import SecurityConfig, Settings

pytestmark = pytest.mark.slow
PASSWORD = "a password for tests"


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTCGRID_TOKEN", "INTRA_VPC", "HTCGRID_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTCGRID_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid"), auth=True) as running:
        with htcgrid.connect(running.url, token=running.credentials["api_key"]) as admin:
            admin._t.call("POST", "/v1/users", json={"name": "alice", "password": PASSWORD})  # type: ignore[attr-defined]
            admin._t.call("POST", "/v1/users", json={"name": "bob", "password": PASSWORD})  # type: ignore[attr-defined]
            assert admin.map([mock(1), mock(1)], timeout=60) == [1, 1]  # workers are up
        yield running


def connector(config: dict[str, str], username: str = "", password: str = "") -> AWSConnector:
    c = AWSConnector()
    c.init(config, username=username, password=password)
    c.authenticate()
    return c


def mock(ms: int | str) -> dict[str, list[str]]:
    return {"worker_arguments": [str(ms), "1", "1"]}


def test_send_and_get_results_have_htc_grids_shapes(grid: GridProcess) -> None:
    alice = connector({"public_api_gateway_url": grid.url}, "alice", PASSWORD)
    submission = alice.send([mock(10), mock("not a number"), mock(20)])
    sid = submission["session_id"]
    assert submission == {"session_id": sid, "task_ids": [f"{sid}_0", f"{sid}_1", f"{sid}_2"]}
    results = alice.get_results(submission, timeout_sec=30)
    assert results == {
        "finished": [f"{sid}_0", f"{sid}_2"],
        "finished_OUTPUT": ["10", "20"],
        "failed": [f"{sid}_1"],
        "failed_OUTPUT": [results["failed_OUTPUT"][0]],
        "cancelled": [],
        "cancelled_OUTPUT": [],
        "metadata": {"tasks_in_response": 3},
    }
    assert results["failed_OUTPUT"][0].startswith("ValueError: invalid literal for int()")
    assert submission.session_id == sid and submission.to_dict()["task_ids"] == submission.task_ids
    assert results["metadata"].to_dict() == {"tasks_in_response": 3}
    assert results.metadata.tasks_in_response == 3 and results.finished == results["finished"]
    assert json.loads(results.to_str())["metadata"] == {"tasks_in_response": 3}
    assert alice.get_results(submission) == results  # timeout 0: wait as long as it takes
    alice.close()


def test_timeout_returns_the_partial_response_and_cancel_counts(grid: GridProcess) -> None:
    alice = GridConnector()
    alice.init({"htcgrid_url": grid.url}, username="alice", password=PASSWORD)
    alice.authenticate()
    submission = alice.send([mock(5), mock(30_000)])
    start = time.monotonic()
    partial = alice.get_results(submission, timeout_sec=1.5)
    assert time.monotonic() - start < 5
    assert partial["finished"] == [submission["task_ids"][0]]
    assert partial["metadata"] == {"tasks_in_response": 1}
    sid = submission["session_id"]
    answer = alice.cancel_sessions([sid])
    assert answer == {
        sid: {"cancelled_pending": 0, "cancelled_processing": 1, "total_cancelled_tasks": 1}
    }
    assert alice.cancel_sessions([sid])[sid]["total_cancelled_tasks"] == 0  # idempotent
    done = alice.get_results(submission, timeout_sec=10)
    assert done["cancelled"] == [submission["task_ids"][1]]
    assert done["cancelled_OUTPUT"] == ["cancelled"]
    alice.close()


def test_api_key_inside_the_vpc_and_priority(
    grid: GridProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTRA_VPC", "1")
    config = {
        "public_api_gateway_url": "http://192.0.2.1:9",  # never used inside the VPC
        "private_api_gateway_url": grid.url,
        "api_gateway_key": grid.credentials["api_key"],
        "dynamodb_results_pull_interval_sec": "0.2",
    }
    admin = connector(config, "ignored-inside-the-vpc", "ignored")
    submission = admin.send([mock(1)], priority=7)
    with htcgrid.connect(grid.url, api_key=grid.credentials["api_key"]) as client:
        assert client.session(submission["session_id"]).status()["priority"] == 7
    assert admin.get_results(submission, timeout_sec=30)["finished_OUTPUT"] == ["1"]
    admin.close()


def test_other_users_sessions_and_bad_credentials(grid: GridProcess) -> None:
    alice = connector({"htcgrid_url": grid.url}, "alice", PASSWORD)
    bob = connector({"htcgrid_url": grid.url}, "bob", PASSWORD)
    submission = alice.send([mock(1)])
    sid = submission["session_id"]
    zero = {"cancelled_pending": 0, "cancelled_processing": 0, "total_cancelled_tasks": 0}
    assert bob.cancel_sessions([sid]) == {sid: zero}  # not bob's: as unknown to HTC-Grid
    assert alice.get_results(submission, timeout_sec=30)["finished_OUTPUT"] == ["1"]
    with (
        htcgrid.connect(grid.url, token=grid.credentials["api_key"]) as native,
        pytest.raises(NotFound),
    ):
        native.session("no-such-session").cancel()  # the native client keeps raising
    with pytest.raises(AuthError, match="wrong user name or password"):
        connector({"htcgrid_url": grid.url}, "alice", "not alice's password")
    nobody = connector({"htcgrid_url": grid.url})  # no credentials at all
    with pytest.raises(AuthError, match="authentication required"):
        nobody.send([mock(1)])
    for c in (alice, bob, nobody):
        c.close()


def test_config_keys() -> None:
    assert api_url({"htcgrid_url": "http://h:1/", "public_api_gateway_url": "x"}) == "http://h:1"
    assert api_url({"public_api_gateway_url": "http://pub", "private_api_gateway_url": "p"}) == (
        "http://pub"
    )
    assert api_url({"private_api_gateway_url": "http://p"}, {"INTRA_VPC": "1"}) == "http://p"
    with pytest.raises(ConfigurationError, match="htcgrid_url"):
        api_url({})


def test_the_refreshed_token_is_the_one_used(tmp_path: Path) -> None:
    server = APIServer(
        "memory://",
        "memory://",
        Settings(),
        bind("127.0.0.1", 0),
        SecurityConfig(access_token_seconds=1.0),
    )
    assert server.auth is not None
    server.auth.add_user("alice", PASSWORD)
    server.start()
    try:
        alice = connector({"htcgrid_url": server.url}, "alice", PASSWORD)
        first = alice.auth.tokens  # type: ignore[union-attr]
        assert first is not None
        until(lambda: time.time() > first.expires_at + 0.05, 5, "the first token to expire")
        expired = httpx.get(
            f"{server.url}/v1/sessions", headers={"Authorization": f"Bearer {first.access_token}"}
        )
        assert expired.json()["error"]["code"] == "token_expired"
        submission = alice.send([1])  # refreshed on the way, with the new token
        now = alice.auth.tokens  # type: ignore[union-attr]
        assert now is not None and now.access_token != first.access_token
        assert now.refresh_token == first.refresh_token
        assert alice.cancel_sessions([submission["session_id"]])
        alice.close()
    finally:
        server.stop()


def test_unknown_sessions_answer_as_htc_grid_does(grid: GridProcess) -> None:
    alice = connector({"htcgrid_url": grid.url, "dynamodb_results_pull_interval_sec": 0.2},
                      "alice", PASSWORD)  # fmt: skip
    unknown = {"session_id": "no-such-session", "task_ids": ["no-such-session_0"]}
    start = time.monotonic()
    results = alice.get_results(unknown, timeout_sec=1)
    assert 1 <= time.monotonic() - start < 5
    assert results["finished"] == results["failed"] == results["cancelled"] == []
    assert results["metadata"].to_dict() == {"tasks_in_response": 0}
    assert alice.cancel_sessions(["no-such-session"]) == {
        "no-such-session": {
            "cancelled_pending": 0,
            "cancelled_processing": 0,
            "total_cancelled_tasks": 0,
        }
    }
    assert alice.invoke_get_results_lambda({"session_id": "no-such-session"})["finished"] == []
    alice.close()


def test_in_out_manager_and_the_raw_results_answer(grid: GridProcess) -> None:
    alice = connector({"htcgrid_url": grid.url}, "alice", PASSWORD)
    submission = alice.send([mock(5), mock("oops")])
    done = alice.get_results(submission, timeout_sec=30)
    first, second = submission["task_ids"]
    raw = alice.invoke_get_results_lambda({"session_id": submission["session_id"]})
    assert raw == {
        "finished": [first],
        "finished_OUTPUT": ["read_from_dataplane"],
        "failed": [second],
        "failed_OUTPUT": ["read_from_dataplane"],
        "cancelled": [],
        "cancelled_OUTPUT": [],
        "metadata": {"tasks_in_response": 2},
    }
    manager = alice.in_out_manager
    stored_output = manager.get_output_to_utf8(first)
    assert base64.b64decode(stored_output).decode() == done["finished_OUTPUT"][0] == "5"
    assert json.loads(base64.b64decode(manager.get_input_to_bytes(first))) == mock(5)
    assert json.loads(manager.get_error_to_utf8(second))["type"] == "ValueError"
    with pytest.raises(NotFound, match="no output: it is failed"):
        manager.get_output_to_utf8(second)
    with pytest.raises(ValidationError, match="read-only"):
        manager.put_input_from_utf8(first, "x")
    alice.close()


def test_only_the_connector_sets_the_root_logger_to_info() -> None:
    probe = (
        "import logging, htcgrid, htcgrid.client.session, htcgrid.compat.grid_config;"
        "before = logging.getLogger().level;"
        "import htcgrid.connector;"
        "print(before, logging.getLogger().level, logging.getLogger('httpx').level)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown == ["30", "20", "30"]  # WARNING, then INFO; httpx's request lines stay quiet
