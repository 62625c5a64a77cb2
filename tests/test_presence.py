"""Agents announce themselves; `htcgrid agents` and GET /v1/agents list them; a submit to a
grid no agent serves says so."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import htcgrid
from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import NoAgentWarning
from htcgrid.presence import (
    FORGET_SECONDS,
    AgentPresence,
    PresenceCheck,
    list_agents,
    no_agent_warning,
)
from htcgrid.service import GridService, SubmitRequest
from htcgrid.store import TaskStore, open_store

T0 = 1_000_000.0


def test_an_agent_beats_lists_and_leaves(store: TaskStore) -> None:
    one = AgentPresence(store, "a1", 4, ["pricing"], host="h1", pid=11, min_interval_seconds=1)
    two = AgentPresence(store, "a2", 2, host="h2", pid=22)
    assert one.beat(T0) and two.beat(T0 + 1)
    assert not one.beat(T0 + 0.5)  # within the interval: no write
    assert one.beat(T0 + 2)
    found = list_agents(store, T0 + 3)
    assert [a.agent_id for a in found] == ["a1", "a2"]
    assert found[0].functions == ("pricing",) and found[1].functions is None
    assert (found[0].started_at, found[0].last_seen, found[0].slots) == (T0, T0 + 2, 4)
    assert (found[1].host, found[1].pid) == ("h2", 22)
    one.leave()
    assert [a.agent_id for a in list_agents(store, T0 + 3)] == ["a2"]
    assert list_agents(store, T0 + 2 + FORGET_SECONDS) == []
    assert store.list_meta("agents/") == {}


def test_the_warning_says_how_long_and_what_to_do() -> None:
    store = open_store("memory://")
    assert "no agent has been seen on this grid;" in str(no_agent_warning(store, T0))
    AgentPresence(store, "a1", 1).beat(T0)
    assert no_agent_warning(store, T0 + 10) is None
    late = no_agent_warning(store, T0 + 95)
    assert late is not None and "for 95 s" in late and "htcgrid agent --url memory://" in late


def test_an_in_process_submit_warns_until_an_agent_is_seen(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    with htcgrid.connect(url) as client, pytest.warns(NoAgentWarning, match="htcgrid agent --url"):
        client.submit([1])
    store = open_store(url)
    AgentPresence(store, "a1", 1).beat(time.time())
    with htcgrid.connect(url) as client, warnings.catch_warnings():
        warnings.simplefilter("error", NoAgentWarning)
        client.submit([2])


def test_the_api_warns_on_submit_and_lists_agents_for_admins() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    headers = {}
    for name, role in (("root", "admin"), ("alice", "user")):
        auth.add_user(name, "correct horse battery", role)
        token = auth.login(name, "correct horse battery").access_token
        headers[name] = {"Authorization": f"Bearer {token}"}
    http = TestClient(create_app(service, auth=auth))
    answer = http.post("/v1/sessions", json={"tasks": [1]}, headers=headers["alice"]).json()
    assert "no agent has been seen" in answer["warning"]
    assert http.get("/v1/agents", headers=headers["alice"]).status_code == 403
    AgentPresence(service.store, "a1", 3, host="h", pid=7).beat(time.time())
    agents = http.get("/v1/agents", headers=headers["root"]).json()["agents"]
    assert [(a["agent_id"], a["slots"], a["host"]) for a in agents] == [("a1", 3, "h")]


def test_the_cli_lists_agents(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    store = open_store(url)
    run = CliRunner().invoke
    assert "no agent has been seen" in run(main, ["agents", "--url", url]).output
    AgentPresence(store, "agent-1", 2, ["pricing"], host="node7").beat(time.time())
    lines = run(main, ["agents", "--url", url]).output.splitlines()
    assert lines[0].split()[:3] == ["AGENT", "HOST", "PID"]
    assert lines[1].split()[:2] == ["agent-1", "node7"] and lines[1].endswith("pricing")
    assert '"agent_id": "agent-1"' in run(main, ["agents", "--url", url, "--json"]).output
    missing = run(main, ["agents", "--url", f"sqlite://{tmp_path / 'nope' / 'grid.db'}"])
    assert missing.exit_code == 1 and "no grid at" in missing.output


def test_service_submit_reports_the_warning() -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    assert service.submit(SubmitRequest(tasks=[1])).warning is not None


def test_a_server_starting_beside_its_agents_waits_before_warning() -> None:
    now = [T0]
    store = open_store("memory://")
    check = PresenceCheck(store, clock=lambda: now[0], grace_seconds=30)
    assert check.warning() is None
    now[0] += 31
    assert check.warning() is not None
    AgentPresence(store, "a1", 1).beat(now[0])
    now[0] += 3
    assert check.warning() is None
