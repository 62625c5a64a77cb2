from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backends import DATA_KINDS, STORE_KINDS, backend_url

from htcgrid.dataplane import DataPlane, open_data_plane
from htcgrid.store import TaskStore, open_store


@pytest.fixture(autouse=True, scope="session")
def private_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test, nor any grid or command it starts, reads or writes the real ~/.config/htcgrid."""
    patch = pytest.MonkeyPatch()
    patch.setenv("HTCGRID_CONFIG_DIR", str(tmp_path_factory.mktemp("htcgrid-config")))
    yield
    patch.undo()


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path, "store") as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[TaskStore]:
    s = open_store(store_url)
    yield s
    s.close()


@pytest.fixture(params=DATA_KINDS)
def data_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with backend_url(request.param, tmp_path, "data") as url:
        yield url


@pytest.fixture
def data(data_url: str) -> Iterator[DataPlane]:
    d = open_data_plane(data_url)
    yield d
    d.close()
