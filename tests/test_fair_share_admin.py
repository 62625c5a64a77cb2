"""Setting owners' fair shares: in process (``htcgrid.shares``), through the API
(``PUT /v1/users/{name}/share``, ``GET /v1/shares``, admins only, the same one-line errors)
and with ``htcgrid user set`` on a backend URL; a share set any of these ways steers the
store's claim."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from test_api_auth_unit import authenticator, error_of, user_record

from htcgrid.api import create_app
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ValidationError
from htcgrid.models import NewTask, SessionSpec
from htcgrid.service import GridService
from htcgrid.shares import KEEP, get_share, list_shares, set_share
from htcgrid.store import TaskStore, open_store
from htcgrid.store.share import Share

NOW = 1_000_000.0


def submit(store: TaskStore, owner: str, n: int) -> None:
    spec = SessionSpec(id=f"{owner}-s", task_count=n, owner=owner, content_hash=owner)
    assert store.create_session(spec, [NewTask(i, 0, b"1") for i in range(n)], NOW)


def test_set_share_keeps_what_is_not_given_and_forgets_the_default() -> None:
    store = open_store("memory://")
    assert get_share(store, "alice") == Share(1.0, None)
    assert set_share(store, "Alice", 3) == Share(3.0, None)  # names fold to lower case
    assert set_share(store, "alice", max_running=5) == Share(3.0, 5)
    assert set_share(store, "alice", KEEP, None) == Share(3.0, None)
    assert list_shares(store) == {"alice": Share(3.0, None)}
    assert set_share(store, "alice", 1) == Share(1.0, None)
    assert list_shares(store) == {}  # back to the default: no record left


@pytest.mark.parametrize(
    ("share", "max_running", "words"),
    [
        (0, KEEP, "share must be above 0"),
        (-2, KEEP, "share must be above 0"),
        (float("inf"), KEEP, "share must be above 0"),
        ("3", KEEP, "share must be a number"),
        (True, KEEP, "share must be a number"),
        (KEEP, -1, "max_running must be a whole number"),
        (KEEP, 2.5, "max_running must be a whole number"),
    ],
)
def test_bad_shares_are_refused_in_process(share: object, max_running: object, words: str) -> None:
    store = open_store("memory://")
    with pytest.raises(ValidationError, match=words):
        set_share(store, "alice", share, max_running)
    assert list_shares(store) == {}


@pytest.fixture
def api() -> Iterator[tuple[TestClient, GridService, dict[str, str], dict[str, str]]]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = authenticator(service.data)
    auth.start()
    heads = {}
    for name, role in (("alice", "user"), ("root", "admin")):
        auth.records.put_user(user_record(name, role))
        heads[name] = {"x-api-key": auth.create_key(name)[1]}
    with TestClient(create_app(service, auth=auth)) as http:
        yield http, service, heads["alice"], heads["root"]


def test_admins_set_shares_through_the_api_and_the_claim_follows(
    api: tuple[TestClient, GridService, dict[str, str], dict[str, str]],
) -> None:
    http, service, _, root = api
    answer = http.put("/v1/users/alice/share", json={"share": 3}, headers=root)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"owner": "alice", "share": 3.0, "max_running": None}
    answer = http.put("/v1/users/alice/share", json={"max_running": 6}, headers=root)
    assert answer.json() == {"owner": "alice", "share": 3.0, "max_running": 6}
    listed = http.get("/v1/shares", headers=root).json()
    assert listed == {"shares": [{"owner": "alice", "share": 3.0, "max_running": 6}]}

    submit(service.store, "bob", 20)  # bob queued first
    submit(service.store, "alice", 20)
    leases = service.store.claim("agent", 8, 60, NOW)
    owners = [lease.session_id.split("-")[0] for lease in leases]
    assert owners.count("alice") == 6 and owners.count("bob") == 2


def test_only_admins_set_shares_and_bad_values_say_what_is_wrong(
    api: tuple[TestClient, GridService, dict[str, str], dict[str, str]],
) -> None:
    http, service, alice, root = api
    error_of(http.put("/v1/users/alice/share", json={"share": 9}, headers=alice), 403, "forbidden")
    error_of(http.get("/v1/shares", headers=alice), 403, "forbidden")
    message = error_of(
        http.put("/v1/users/alice/share", json={"share": 0}, headers=root), 400, "invalid_request"
    )
    with pytest.raises(ValidationError) as in_process:
        set_share(service.store, "alice", 0)
    assert message == str(in_process.value)
    bad_quota = http.put("/v1/users/alice/share", json={"max_running": -1}, headers=root)
    assert "max_running must be a whole number" in error_of(bad_quota, 400, "invalid_request")
    assert list_shares(service.store) == {}


def test_htcgrid_user_set_on_a_backend_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("HTCGRID_")]:
        monkeypatch.delenv(name)
    url = f"sqlite://{tmp_path / 'grid.db'}"
    open_store(url).close()
    grid = ["--url", url, "--data-url", f"file://{tmp_path / 'blobs'}"]

    def cli(*args: str) -> str:
        result = CliRunner().invoke(main, [*args, *grid], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "alice: share 3, at most 4 running" in cli(
        "user", "set", "alice", "--share", "3", "--max-running", "4"
    )
    assert "bob: share 0.5, no quota" in cli("user", "set", "bob", "--share", "0.5")
    assert "alice: share 3, no quota" in cli("user", "set", "alice", "--no-max-running")
    listed = json.loads(cli("user", "shares", "--json"))
    assert listed == [
        {"owner": "alice", "share": 3.0, "max_running": None},
        {"owner": "bob", "share": 0.5, "max_running": None},
    ]
    store = open_store(url)
    try:
        assert list_shares(store)["alice"] == Share(3.0, None)
    finally:
        store.close()
    nothing = CliRunner().invoke(main, ["user", "set", "alice", *grid])
    assert nothing.exit_code == 2 and "give --share, --max-running" in nothing.output
