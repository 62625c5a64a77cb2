"""A session naming a function that is not deployed is refused at submit, on every path."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import htcgrid
from htcgrid.api import create_app
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ValidationError
from htcgrid.functions import FunctionRegistry
from htcgrid.service import GridService, SubmitRequest
from htcgrid.store import open_store


def test_the_service_refuses_an_unknown_function_and_lists_the_deployed() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    with pytest.raises(ValidationError, match=r"no function named 'nosuch' is deployed"):
        service.submit(SubmitRequest(tasks=[1], function="nosuch"))
    FunctionRegistry(service.data).deploy("pricing", b"zip", "m.f")
    assert service.submit(SubmitRequest(tasks=[1], function="pricing")).created
    assert service.submit(SubmitRequest(tasks=[1])).created
    with pytest.raises(ValidationError, match=r"deployed: pricing"):
        service.submit(SubmitRequest(tasks=[1], function="pricingg"))
    assert service.store.list_sessions() and len(service.store.list_sessions()) == 2


def test_the_api_answers_400_with_the_deployed_functions() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    FunctionRegistry(service.data).deploy("pricing", b"zip", "m.f")
    http = TestClient(create_app(service))
    answer = http.post("/v1/sessions", json={"tasks": [1], "function": "nosuch"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unknown_function"
    assert "deployed: pricing" in answer.json()["error"]["message"]
    assert http.post("/v1/sessions", json={"tasks": [1], "function": "pricing"}).status_code == 201


def test_the_in_process_client_and_map_refuse_it(tmp_path: Path) -> None:
    with htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}") as grid:
        with pytest.raises(ValidationError, match="nosuch"):
            grid.map([1, 2], function="nosuch")
        with pytest.raises(ValidationError, match="nosuch"):
            grid.submit([1], function="nosuch")
        assert grid.sessions() == []


def test_the_cli_submit_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    run = CliRunner().invoke(main, ["submit", "--url", url, "--function", "nosuchfn"], input="[1]")
    assert run.exit_code != 0
    assert "no function named 'nosuchfn' is deployed" in run.output
    assert "Traceback" not in run.output
