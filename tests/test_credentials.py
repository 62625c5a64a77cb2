"""Where the CLI finds credentials: saved logins and local grids by URL, whatever loopback name
the URL uses, and the lock that keeps two grids off one data dir."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from htcgrid.client.logins import (
    ADMIN_CREDENTIALS,
    LoginStore,
    Tokens,
    local_grid_api_key,
    remember_grid,
    url_key,
)
from htcgrid.datadir import LOCK_FILE, claim_data_dir
from htcgrid.errors import ConfigurationError


@pytest.mark.parametrize(
    "a, b",
    [
        ("http://localhost:8080", "http://127.0.0.1:8080/"),
        ("http://[::1]:8080", "http://LOCALHOST:8080"),
        ("http://127.0.0.1", "http://localhost:80"),
        ("https://grid.example.org/", "https://grid.example.org:443"),
    ],
)
def test_urls_of_one_grid_have_one_key(a: str, b: str) -> None:
    assert url_key(a) == url_key(b)


@pytest.mark.parametrize(
    "a, b",
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8081"),
        ("http://127.0.0.1:8080", "https://127.0.0.1:8080"),
        ("http://127.0.0.2:8080", "http://127.0.0.1:8080"),
    ],
)
def test_other_grids_have_other_keys(a: str, b: str) -> None:
    assert url_key(a) != url_key(b)


def test_a_local_grid_is_found_from_any_folder(tmp_path: Path) -> None:
    environ = {"HTCGRID_CONFIG_DIR": str(tmp_path / "config")}
    data_dir = tmp_path / "grid"
    data_dir.mkdir()
    url = "http://127.0.0.1:8123"
    found = {"user": "admin", "password": "p", "api_key": "htcgrid_k", "url": url}
    (data_dir / ADMIN_CREDENTIALS).write_text(json.dumps(found))
    assert local_grid_api_key("http://localhost:8123", environ) is None  # not recorded yet
    remember_grid(url, data_dir, environ)
    assert local_grid_api_key("http://localhost:8123", environ) == "htcgrid_k"
    assert local_grid_api_key("http://[::1]:8123/", environ) == "htcgrid_k"
    assert local_grid_api_key("http://127.0.0.1:9999", environ) is None
    found["url"] = "http://127.0.0.1:9999"  # that data dir now serves another port
    (data_dir / ADMIN_CREDENTIALS).write_text(json.dumps(found))
    assert local_grid_api_key(url, environ) is None
    gone = tmp_path / "gone"
    gone.mkdir()
    remember_grid("http://127.0.0.1:8124", gone, environ)
    gone.rmdir()
    remember_grid(url, data_dir, environ)  # forgets grids whose data dir is gone
    recorded = json.loads((tmp_path / "config" / "grids.json").read_text())
    assert recorded == {url: str(data_dir.resolve())}


def test_saved_logins_match_any_loopback_name(tmp_path: Path) -> None:
    store = LoginStore(tmp_path)
    store.put("http://127.0.0.1:8080", Tokens("a", "r", 1e12, "dave"))
    got = store.get("http://localhost:8080/")
    assert got is not None and got.user == "dave"
    store.put("http://localhost:8080", Tokens("b", "r", 1e12, "erin"))  # replaces, not adds
    assert list(json.loads(store.path.read_text())) == ["http://localhost:8080"]
    assert store.remove("http://[::1]:8080") and store.get("http://127.0.0.1:8080") is None


def test_one_grid_per_data_dir(tmp_path: Path) -> None:
    first = claim_data_dir(tmp_path / "grid")
    with pytest.raises(ConfigurationError, match="already running on data dir"):
        claim_data_dir(tmp_path / "grid")
    first.release()
    claim_data_dir(tmp_path / "grid").release()


def test_the_lock_goes_with_the_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from htcgrid.datadir import claim_data_dir; "
            f"claim_data_dir(Path({str(tmp_path)!r})); print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with pytest.raises(ConfigurationError, match=f"pid {holder.pid}"):
        claim_data_dir(tmp_path)
    holder.kill()
    holder.wait(timeout=30)
    claim_data_dir(tmp_path).release()  # a killed grid leaves no stale lock
    assert (tmp_path / LOCK_FILE).exists()


def test_a_data_dir_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigurationError, match="choose a --data-dir you can write to"):
        claim_data_dir(tmp_path / "file" / "grid")
