"""`htcgrid user|key|login|logout`, on a backend URL and through the API, and what
`htcgrid up` does about access: loopback, the admin's credentials file, --no-auth, HTTPS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from grid_process import ROOT, htcgrid_up

import htcgrid
from htcgrid.api.server import APIServer, bind
from htcgrid.cli import main
from htcgrid.settings import SecurityConfig, Settings

PASSWORD = "a password for the cli"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in [k for k in os.environ if k.startswith("HTCGRID_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTCGRID_CONFIG_DIR", str(tmp_path / "config"))
    return {"HTCGRID_CONFIG_DIR": str(tmp_path / "config")}


def cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_users_and_keys_straight_on_the_backend(tmp_path: Path, env: dict[str, str]) -> None:
    grid = ["--url", f"sqlite://{tmp_path / 'grid.db'}"]
    added = cli("user", "add", "Alice", "--password", PASSWORD, *grid)
    assert added.exit_code == 0 and "added user alice" in added.output
    assert "no grid server has started" in added.output  # a hint: is the data plane right?
    prompted = cli("user", "add", "root", "--admin", *grid, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    listed_users = cli("user", "list", *grid).stdout.splitlines()
    assert listed_users[0].split() == ["USER", "ROLE", "ADDED"]
    assert [line.split()[:2] for line in listed_users[1:]] == [["alice", "user"], ["root", "admin"]]
    as_json = json.loads(cli("user", "list", "--json", *grid).stdout)
    assert [(u["name"], u["role"]) for u in as_json] == [("alice", "user"), ("root", "admin")]
    created = cli("key", "create", "--user", "alice", "--label", "ci", *grid)
    secret = created.stdout.strip()
    key_id = secret.split("_")[1]
    assert secret.startswith("htcgrid_") and f"key {key_id} for alice" in created.stderr
    listed = cli("key", "list", *grid).output
    assert [key_id, "alice", "ci"] in [line.split()[:3] for line in listed.splitlines()]
    assert secret not in listed
    assert json.loads(cli("key", "list", "--json", *grid).stdout)[0]["key_id"] == key_id
    assert cli("key", "revoke", key_id, *grid).exit_code == 0
    assert cli("key", "revoke", key_id, *grid).exit_code == 1
    assert cli("user", "passwd", "alice", "--password", "new password", *grid).exit_code == 0
    assert cli("user", "remove", "alice", *grid).exit_code == 0
    duplicate = cli("user", "add", "root", "--password", PASSWORD, *grid)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad = cli("user", "add", "../root", "--password", PASSWORD, *grid)
    assert bad.exit_code == 1 and "user name must be" in bad.output


@pytest.fixture
def api(tmp_path: Path) -> Iterator[APIServer]:
    server = APIServer(
        f"sqlite://{tmp_path / 'grid.db'}",
        f"file://{tmp_path / 'blobs'}",
        Settings(),
        bind("127.0.0.1", 0),
        SecurityConfig(),
    )
    assert server.auth is not None
    server.auth.add_user("root", PASSWORD, "admin")
    server.start()
    yield server
    server.stop()


def test_login_keeps_a_private_token_that_later_commands_use(
    api: APIServer, tmp_path: Path, env: dict[str, str]
) -> None:
    assert api.auth is not None
    admin_key = api.auth.create_key("root")[1]
    url = ["--url", api.url]
    assert (
        cli("user", "add", "dave", "--password", PASSWORD, *url, "--token", admin_key).exit_code
        == 0
    )
    refused = cli("sessions", *url)
    assert refused.exit_code == 1 and "authentication required" in refused.output
    wrong = cli("login", *url, "--user", "dave", "--password", "nope nope")
    assert wrong.exit_code == 1 and "wrong user name or password" in wrong.output
    logged = cli("login", *url, "--user", "dave", input=f"{PASSWORD}\n")
    assert logged.exit_code == 0 and "as dave (user)" in logged.output
    stored = tmp_path / "config" / "logins.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert json.loads(stored.read_text())[api.url]["user"] == "dave"
    submitted = cli("submit", "-", *url, input="[1, 2]")
    assert submitted.exit_code == 0, submitted.output
    assert submitted.output.strip() in cli("sessions", *url).output
    assert cli("user", "list", *url).exit_code == 1  # dave is not an admin
    with htcgrid.connect(api.url) as client:  # the Python client finds the stored login too
        assert len(client.sessions()) == 1
    assert cli("logout", *url).exit_code == 0
    assert cli("sessions", *url).exit_code == 1
    assert cli("sessions", *url, "--token", admin_key).exit_code == 0


def test_a_refused_saved_login_says_how_to_log_in_again(
    api: APIServer, env: dict[str, str]
) -> None:
    assert api.auth is not None
    api.auth.add_user("erin", PASSWORD, "user")
    url = api.url.replace("127.0.0.1", "localhost")  # the same grid by another name
    assert cli("login", "--url", api.url, "--user", "erin", "--password", PASSWORD).exit_code == 0
    assert cli("sessions", "--url", url).exit_code == 0
    api.auth.remove_user("erin")  # her tokens stop working at once
    refused = cli("sessions", "--url", url)
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        f"htcgrid: the saved login for {url} is out of date (the grid refused it); "
        f"log in again with: htcgrid login --url {url}"
    ]


def test_htcgrid_up_is_private_by_default(tmp_path: Path, env: dict[str, str]) -> None:
    data_dir = tmp_path / "grid"
    with htcgrid_up(data_dir, "--agents", "0", auth=True) as grid:
        assert grid.url.startswith("http://127.0.0.1:")
        credentials_file = data_dir / "admin-credentials.json"
        assert credentials_file.stat().st_mode & 0o777 == 0o600
        assert data_dir.stat().st_mode & 0o077 == 0
        found = grid.credentials
        assert found["user"] == "admin" and found["url"] == grid.url
        assert httpx.get(f"{grid.url}/v1/sessions").status_code == 401
        logged = cli("login", "--credentials", str(credentials_file))
        assert logged.exit_code == 0 and "as admin (admin)" in logged.output
        assert cli("sessions", "--url", grid.url).exit_code == 0
        first_key = found["api_key"]
    with htcgrid_up(data_dir, "--agents", "0", auth=True) as again:  # no second admin
        assert again.credentials["api_key"] == first_key and again.credentials["url"] == again.url
        with htcgrid.connect(again.url, api_key=first_key) as client:
            users = client._t.call("GET", "/v1/users")["users"]  # type: ignore[attr-defined]
            assert [u["name"] for u in users] == ["admin"]
        # the CLI finds the local grid's key on its own, from any folder, by any loopback name
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (Path(env["HTCGRID_CONFIG_DIR"]) / "logins.json").unlink()
        for host in ("localhost", "127.0.0.1"):
            named = again.url.replace("127.0.0.1", host)
            found = subprocess.run(
                [sys.executable, "-m", "htcgrid", "sessions", "--url", named],
                capture_output=True,
                text=True,
                timeout=60,
                cwd=elsewhere,
            )
            assert found.returncode == 0, found.stderr
        # a second grid on the same data dir is refused, and changes nothing
        second = subprocess.run(
            [sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "already running on data dir" in second.stderr
        assert len(second.stderr.splitlines()) == 1
        assert again.credentials["url"] == again.url


def test_no_auth_only_on_loopback_and_loudly(tmp_path: Path) -> None:
    up = [sys.executable, "-m", "htcgrid", "up", "--data-dir", str(tmp_path / "g"), "--port", "0"]
    refused = subprocess.run(
        [*up, "--host", "0.0.0.0", "--no-auth"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "only for loopback" in refused.stderr
    with subprocess.Popen(
        [*up, "--no-auth", "--agents", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{url}/v1/sessions").status_code == 200
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=60)
    assert "WARNING: authentication is OFF (--no-auth)" in stderr


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "htcgrid test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.mark.slow
def test_htcgrid_up_serves_https(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    extra = ("--tls-cert", str(cert), "--tls-key", str(key))
    command = [
        sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", str(tmp_path / "g"),
        "--slots", "1", "--handler", "htcgrid.handlers.echo", *extra,
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        try:
            assert url.startswith("https://127.0.0.1:")
            api_key = json.loads((tmp_path / "g" / "admin-credentials.json").read_text())["api_key"]
            with htcgrid.connect(url, api_key=api_key, verify=str(cert)) as client:
                assert client.map([{"tls": True}], timeout=30) == [{"tls": True}]
            with pytest.raises(httpx.HTTPError):
                httpx.get(url.replace("https://", "http://") + "/healthz", timeout=5)
            with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused
                httpx.get(f"{url}/healthz", timeout=5)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
