"""HTC-Grid's AWSConnector in milliseconds: its API over Starlette's TestClient on a memory
grid, so the answers' exact shapes, the config keys it reads and the way it treats unknown
sessions are pinned without a server (tests/test_connector.py runs it against a real one)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.client.http import HTTPTransport
from htcgrid.compat import grid_config
from htcgrid.compat.answers import CANCELLED_OUTPUT, PLACEHOLDER_OUTPUT
from htcgrid.connector import AWSConnector, api_url
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ConfigurationError, NotFound, ValidationError
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

NOW = 1_000_000.0
pytestmark = pytest.mark.filterwarnings("ignore:no agent has been seen")


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTCGRID_TOKEN", "INTRA_VPC", "HTCGRID_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTCGRID_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture
def service() -> GridService:
    return GridService(open_store("memory://"), open_data_plane("memory://"))


@pytest.fixture
def connector(service: GridService) -> Iterator[AWSConnector]:
    c = AWSConnector()
    c.init({"htcgrid_url": "http://testserver/", "dynamodb_results_pull_interval_sec": 0.01})
    transport = c.client._t if c.client is not None else None
    assert isinstance(transport, HTTPTransport)
    with TestClient(create_app(service)) as http:
        transport.http = http
        yield c


def end(service: GridService, states: dict[int, TaskState] | None = None) -> None:
    """End every pending task: finished with output ``index * 10`` unless ``states`` says."""
    for lease in service.store.claim("agent", 100, 60, NOW):
        state = (states or {}).get(lease.index, TaskState.FINISHED)
        output = json.dumps(lease.index * 10).encode() if state is TaskState.FINISHED else None
        error = None if output else ErrorInfo("KeyError", "'spot'", "tb")
        done = Outcome(lease.task_id, lease.attempt, state, output=output, error=error)
        assert service.store.complete("agent", [done], NOW) == [True]


# ---- the config ------------------------------------------------------------------------------


def test_the_api_url_is_htcgrid_url_else_the_gateway_the_network_calls_for() -> None:
    both = {"public_api_gateway_url": "https://pub/", "private_api_gateway_url": "https://priv"}
    assert api_url({**both, "htcgrid_url": "http://mine/"}, {}) == "http://mine"
    assert api_url(both, {}) == "https://pub"
    assert api_url(both, {"INTRA_VPC": "1"}) == "https://priv"
    assert api_url({"private_api_gateway_url": "https://priv"}, {}) == "https://priv"
    with pytest.raises(ConfigurationError, match="htcgrid_url"):
        api_url({}, {})


def test_init_reads_the_function_and_poll_interval_and_checks_the_storage_service() -> None:
    c = AWSConnector()
    config = {
        "htcgrid_url": "http://grid",
        "htcgrid_function": "pricing",
        grid_config.RESULTS_POLL_KEY: "0.001",
    }
    c.init(config)
    assert (c.url, c.function, c.results_pull_interval_sec) == ("http://grid", "pricing", 0.05)
    with pytest.raises(ConfigurationError, match="grid_storage_service"):
        AWSConnector().init({**config, "grid_storage_service": "FLOPPY"})


def test_a_connector_not_initialised_says_so() -> None:
    with pytest.raises(ConfigurationError, match="init"):
        AWSConnector().send([1])


def test_an_api_key_is_sent_as_htc_grids_header() -> None:
    c = AWSConnector()
    c.init({"htcgrid_url": "http://grid", "api_gateway_key": "k-123"})
    transport = c.client._t if c.client is not None else None
    assert isinstance(transport, HTTPTransport)
    request = transport.http.build_request("GET", "/v1/sessions")
    assert c.auth is not None
    sent = next(c.auth.auth_flow(request))
    assert sent.headers["x-api-key"] == "k-123"
    c.authenticate()  # nothing to log in with an API key: no request is sent


# ---- submitting --------------------------------------------------------------------------------


def test_send_answers_the_session_and_its_task_ids_in_order(
    connector: AWSConnector, service: GridService
) -> None:
    answer = connector.send([{"a": 1}, {"a": 2}], priority=4)
    sid = answer["session_id"]
    assert answer.session_id == sid  # a dict that is also read as a model
    assert answer["task_ids"] == [f"{sid}_0", f"{sid}_1"]
    spec = service.session(sid).spec
    assert (spec.task_count, spec.priority, spec.function) == (2, 4, "default")


def test_the_envelope_is_htc_grids_and_an_envelope_without_a_session_is_refused(
    connector: AWSConnector,
) -> None:
    envelope = connector.generate_user_task_json([1, 2, 3])
    assert envelope["tasks_list"] == {"tasks": [1, 2, 3]}
    assert envelope["scheduler_data"]["task_timeout_sec"] == 3600
    assert set(envelope) == {"session_id", "scheduler_data", "stats", "tasks_list"}
    with pytest.raises(ConfigurationError, match="session_id"):
        connector.submit({**envelope, "session_id": "None"})


# ---- results -----------------------------------------------------------------------------------


def test_get_results_gives_htc_grids_lists(connector: AWSConnector, service: GridService) -> None:
    answer = connector.send([0, 1, 2])
    sid = answer["session_id"]
    end(service, {1: TaskState.FAILED})
    got = connector.get_results(answer, timeout_sec=10)
    assert got["finished"] == [f"{sid}_0", f"{sid}_2"]
    assert got["finished_OUTPUT"] == ["0", "20"]  # outputs as JSON text, as HTC-Grid's
    assert (got["failed"], got["failed_OUTPUT"]) == ([f"{sid}_1"], ["KeyError: 'spot'"])
    assert (got["cancelled"], got["cancelled_OUTPUT"]) == ([], [])
    assert got["metadata"]["tasks_in_response"] == 3
    assert got.metadata.to_dict() == {"tasks_in_response": 3}


def test_get_results_returns_what_is_there_at_its_timeout(
    connector: AWSConnector, service: GridService
) -> None:
    answer = connector.send([0, 1])
    leases = service.store.claim("agent", 1, 60, NOW)
    done = Outcome(leases[0].task_id, leases[0].attempt, TaskState.FINISHED, output=b"7")
    assert service.store.complete("agent", [done], NOW) == [True]
    got = connector.get_results(answer, timeout_sec=0.2)
    assert (got["finished"], got["finished_OUTPUT"]) == ([leases[0].task_id], ["7"])
    assert got["metadata"]["tasks_in_response"] == 1


def test_an_unknown_session_gives_empty_lists_and_zero_counts(connector: AWSConnector) -> None:
    unknown = {"session_id": "no-such-session", "task_ids": ["no-such-session_0"]}
    got = connector.get_results(unknown, timeout_sec=0.1)
    assert got["finished"] == [] and got["metadata"]["tasks_in_response"] == 0
    assert connector.invoke_get_results_lambda(unknown)["finished"] == []
    zero = {"cancelled_pending": 0, "cancelled_processing": 0, "total_cancelled_tasks": 0}
    assert connector.cancel_sessions(["no-such-session"]) == {"no-such-session": zero}


def test_the_raw_result_answer_names_the_tasks_and_leaves_outputs_in_the_data_plane(
    connector: AWSConnector, service: GridService
) -> None:
    answer = connector.send([0, 1])
    end(service)
    raw = connector.invoke_get_results_lambda({"session_id": answer["session_id"]})
    assert raw["finished"] == answer["task_ids"]
    assert raw["finished_OUTPUT"] == [PLACEHOLDER_OUTPUT] * 2
    reader = connector.in_out_manager
    first, second = answer["task_ids"]
    assert json.loads(base64.b64decode(reader.get_output_to_bytes(second))) == 10
    assert json.loads(base64.b64decode(reader.get_input_to_utf8(first))) == 0
    with pytest.raises(NotFound, match="no error"):
        reader.get_error_to_utf8(first)
    with pytest.raises(ValidationError, match="read-only"):
        reader.put_output_from_bytes(first, b"x")


def test_the_reader_says_why_a_task_has_no_output(
    connector: AWSConnector, service: GridService
) -> None:
    answer = connector.send([0, 1])
    end(service, {0: TaskState.FAILED, 1: TaskState.FAILED})
    reader = connector.in_out_manager
    with pytest.raises(NotFound, match="it is failed"):
        reader.get_output_to_utf8(answer["task_ids"][0])
    error = json.loads(reader.get_error_to_utf8(answer["task_ids"][1]))
    assert (error["type"], error["message"]) == ("KeyError", "'spot'")


def test_cancel_counts_per_session(connector: AWSConnector, service: GridService) -> None:
    first = connector.send([1, 2])["session_id"]
    second = connector.send([3])["session_id"]
    service.store.claim("agent", 1, 60, NOW)  # one task of one session is running
    counts = connector.cancel_sessions([first, second])
    assert sum(c["total_cancelled_tasks"] for c in counts.values()) == 3
    assert sum(c["cancelled_processing"] for c in counts.values()) == 1
    assert connector.cancel(first)["total_cancelled_tasks"] == 0  # already cancelled
    got = connector.get_results({"session_id": second, "task_ids": [f"{second}_0"]}, 5)
    assert got["cancelled_OUTPUT"] == [CANCELLED_OUTPUT]
