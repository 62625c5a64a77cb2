"""The grid records its data-plane URL; every opener of its store uses that one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import htcgrid
from htcgrid.backends import DATA_URL_KEY, open_grid
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ConfigurationError
from htcgrid.functions import FunctionRegistry


@pytest.fixture
def grid(tmp_path: Path) -> tuple[str, str]:
    """A grid as `htcgrid up` lays it out, started once (so its data plane is recorded)."""
    store_url, data_url = f"sqlite://{tmp_path / 'grid.db'}", f"file://{tmp_path / 'blobs'}"
    store, _ = open_grid(store_url, data_url, record=True)
    store.close()
    return store_url, data_url


def test_the_first_server_records_and_later_openers_follow(
    grid: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_url, data_url = grid
    store, data = open_grid(store_url)
    assert store.get_meta(DATA_URL_KEY) == data_url and data.url == data_url
    store, data = open_grid(store_url, data_url, record=True)
    assert data.url == data_url
    monkeypatch.chdir(tmp_path)
    assert open_grid(store_url, "file://blobs")[1].url == data_url  # another spelling
    with pytest.raises(ConfigurationError) as refused:
        open_grid(store_url, store_url, record=True)
    assert data_url in str(refused.value) and store_url in str(refused.value)


def test_without_a_record_the_store_url_serves_both_roles(tmp_path: Path) -> None:
    store, data = open_grid(f"sqlite://{tmp_path / 'g.db'}")
    assert data.url == f"sqlite://{tmp_path / 'g.db'}" and store.get_meta(DATA_URL_KEY) is None


def test_connect_puts_large_payloads_where_the_agents_look(grid: tuple[str, str]) -> None:
    store_url, data_url = grid
    with htcgrid.connect(store_url) as client:
        session = client.submit(["x" * 100_000])
    key = f"sessions/{session.id}/{session.id}_0/input"
    assert open_data_plane(data_url).get(key).startswith(b'"xxx')


def test_deploy_with_default_options_deploys_where_the_grid_reads(
    grid: tuple[str, str], tmp_path: Path
) -> None:
    store_url, data_url = grid
    (tmp_path / "fn1").mkdir()
    (tmp_path / "fn1" / "f1.py").write_text("def handler(event, context):\n    return 1\n")
    run = CliRunner().invoke
    made = run(
        main,
        ["deploy", "fn1", str(tmp_path / "fn1"), "--handler", "f1.handler", "--url", store_url],
    )
    assert made.exit_code == 0, made.output
    assert FunctionRegistry(open_data_plane(data_url)).names() == ["fn1"]
    other = f"file://{tmp_path / 'elsewhere'}"
    wrong = run(main, ["functions", "--url", store_url, "--data-url", other])
    assert wrong.exit_code == 1 and len(wrong.output.strip().splitlines()) == 1
    assert other in wrong.output and data_url in wrong.output


@pytest.mark.parametrize(
    "command", [["sessions"], ["status", "s1"], ["task", "s1_0"], ["functions"]]
)
def test_read_commands_never_create_a_grid(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope" / "grid.db"
    run = CliRunner().invoke(main, [*command, "--url", f"sqlite://{missing}"])
    assert run.exit_code == 1 and "no grid at" in run.output, run.output
    assert len(run.output.strip().splitlines()) == 1
    assert not os.path.exists(missing.parent)


@pytest.mark.parametrize("command", ["up", "agent"])
def test_a_missing_path_is_one_line(tmp_path: Path, command: str) -> None:
    run = CliRunner().invoke(main, [command, "--path", str(tmp_path / "missing")])
    assert run.exit_code == 2 and "does not exist" in run.output
    assert len(run.output.strip().splitlines()) == 1
