"""Deploying over the API: streamed zip uploads with a checked sha256, roles, and the CLI."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.api.server import APIServer, bind
from htcgrid.auth.principals import Authenticator
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.functions import zip_directory
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.store import open_store

PASSWORD = "correct horse battery"
LIMIT = 200_000
API = tuple[TestClient, dict[str, dict[str, str]]]


def package(tmp_path: Path, text: str = "def f(event, context):\n    return event\n") -> bytes:
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(text)
    return zip_directory(folder)


@pytest.fixture
def api() -> Iterator[API]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    headers = {}
    for name, role in (("root", "admin"), ("dep", "deployer"), ("alice", "user")):
        auth.add_user(name, PASSWORD, role)
        token = auth.login(name, PASSWORD).access_token
        headers[name] = {"Authorization": f"Bearer {token}"}
    security = SecurityConfig(max_body_bytes=LIMIT, rate_limit_per_second=0)
    yield TestClient(create_app(service, auth=auth, security=security)), headers


def deploy(http: TestClient, who: dict[str, str], body: bytes, **params: str) -> httpx.Response:
    query = {"handler": "handler.f", **params}
    return http.post("/v1/functions/pricing", params=query, content=body, headers=who)


def test_deployers_deploy_and_users_only_read(api: API, tmp_path: Path) -> None:
    http, who = api
    zipped = package(tmp_path)
    refused = deploy(http, who["alice"], zipped)
    assert refused.status_code == 403
    made = deploy(http, who["dep"], zipped, sha256=hashlib.sha256(zipped).hexdigest())
    assert made.status_code == 201, made.text
    assert made.json()["version"] == 1
    assert made.json()["sha256"] == hashlib.sha256(zipped).hexdigest()
    assert deploy(http, who["root"], zipped).json()["version"] == 2
    listing = http.get("/v1/functions", headers=who["alice"]).json()["functions"]
    assert [(f["name"], f["current"], len(f["versions"])) for f in listing] == [("pricing", 2, 2)]
    back = http.post("/v1/functions/pricing/rollback", json={"version": 1}, headers=who["dep"])
    assert back.status_code == 200 and back.json()["version"] == 1
    assert http.get("/v1/functions/pricing", headers=who["alice"]).json()["current"] == 1
    alice_rollback = http.post(
        "/v1/functions/pricing/rollback", json={"version": 2}, headers=who["alice"]
    )
    assert alice_rollback.status_code == 403
    submit = {"tasks": [1], "function": "pricing"}
    assert http.post("/v1/sessions", json=submit, headers=who["alice"]).status_code == 201
    assert http.delete("/v1/functions/pricing", headers=who["alice"]).status_code == 403
    assert http.delete("/v1/functions/pricing", headers=who["dep"]).status_code == 204
    assert http.get("/v1/functions/pricing", headers=who["alice"]).status_code == 404
    gone = http.post("/v1/sessions", json=submit, headers=who["alice"])
    assert gone.status_code == 400 and "pricing" in gone.json()["error"]["message"]


def test_damaged_wrong_or_oversized_packages_are_refused(api: API, tmp_path: Path) -> None:
    http, who = api
    zipped = package(tmp_path)
    wrong = deploy(http, who["root"], zipped, sha256="0" * 64)
    assert wrong.status_code == 400 and "damaged" in wrong.json()["error"]["message"]
    not_zip = deploy(http, who["root"], b"not a zip")
    assert not_zip.status_code == 400 and "zip" in not_zip.json()["error"]["message"]
    huge = deploy(http, who["root"], b"x" * (LIMIT + 1))
    assert huge.status_code == 413
    assert http.get("/v1/functions", headers=who["root"]).json() == {"functions": []}
    assert http.get("/v1/functions", headers={}).status_code == 401


def test_the_cli_deploys_lists_shows_rolls_back_and_deletes_over_http(tmp_path: Path) -> None:
    server = APIServer(
        f"sqlite://{tmp_path / 'grid.db'}",
        f"file://{tmp_path / 'blobs'}",
        Settings(),
        bind("127.0.0.1", 0),
        SecurityConfig(),
    )
    assert server.auth is not None
    server.auth.add_user("dep", PASSWORD, "deployer")
    token = server.auth.login("dep", PASSWORD).access_token
    server.start()
    try:
        source = tmp_path / "src"
        package(tmp_path)
        run = CliRunner().invoke
        where = ["--url", server.url, "--token", token]
        for _ in range(2):
            made = run(main, ["deploy", "fn1", str(source), "--handler", "handler.f", *where])
            assert made.exit_code == 0, made.output
        assert made.output.startswith("fn1 v2 sha256:")
        listing = run(main, ["functions", *where]).output.splitlines()
        assert [line.split()[:3] for line in listing] == [
            ["fn1", "v1", "python"],
            ["*", "fn1", "v2"],
        ]
        assert (
            run(main, ["function", "rollback", "fn1", "1", *where]).output == "fn1 v1 is current\n"
        )
        assert '"current": 1' in run(main, ["function", "show", "fn1", "--json", *where]).output
        assert run(main, ["function", "delete", "fn1", *where]).exit_code == 0
        missing = run(main, ["function", "show", "fn1", *where])
        assert missing.exit_code == 1 and "fn1" in missing.output
    finally:
        server.stop()


def test_an_admin_adds_a_deployer_by_cli_and_api(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    open_store(url).close()
    made = CliRunner().invoke(
        main, ["user", "add", "dep", "--deployer", "--password", PASSWORD, "--url", url]
    )
    assert made.exit_code == 0 and made.output.endswith("added deployer dep\n"), made.output
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("root", PASSWORD, "admin")
    root = {"Authorization": f"Bearer {auth.login('root', PASSWORD).access_token}"}
    http = TestClient(create_app(service, auth=auth))
    body = {"name": "dep2", "password": PASSWORD, "role": "deployer"}
    assert http.post("/v1/users", json=body, headers=root).json()["role"] == "deployer"
