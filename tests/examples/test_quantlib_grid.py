"""HTC-Grid's flagship example through the grid: the QuantLib pricer packaged by the seed's
recipe (QuantLib installed into the package folder, then ``zip -yr``), deployed, and priced
by an agent that never had it on its own path."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("QuantLib")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))

from package_helpers import FAST, outputs, package_agent, submit, zip_recipe
from test_quantlib_engine import REFERENCE, SAMPLE

from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry, read_package
from htcgrid.service import GridService
from htcgrid.store import open_store

ENGINE = Path(__file__).resolve().parents[2] / "examples" / "workloads" / "quant_lib"


def install_quantlib(target: Path) -> None:
    """``pip install --target`` needs the wheel (and so the network); the installed package
    folders are what it would have put there."""
    import QuantLib

    site = Path(QuantLib.__file__).resolve().parents[1]
    for entry in site.iterdir():
        if entry.name.lower().startswith("quantlib"):
            copy = shutil.copytree if entry.is_dir() else shutil.copy2
            copy(entry, target / entry.name, symlinks=True)  # type: ignore[operator]


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    yield GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), FAST)
    store.close()


def test_the_sample_portfolio_prices_through_the_grid(grid: GridService, tmp_path: Path) -> None:
    if shutil.which("zip") is None:
        pytest.skip("needs the zip command")
    app = tmp_path / "app"
    app.mkdir()
    for module in ENGINE.glob("*.py"):
        shutil.copy2(module, app)
    (app / "where.py").write_text(
        "def lambda_handler(event, context):\n    import QuantLib\n    return QuantLib.__file__\n"
    )
    install_quantlib(app)
    package = read_package(zip_recipe(app))
    registry = FunctionRegistry(grid.data)
    registry.deploy("pricing", package, "portfolio_pricing_engine.lambda_handler")
    registry.deploy("where", package, "where.lambda_handler")
    priced = submit(grid, [{"portfolio": [trade]} for trade in SAMPLE], function="pricing")
    located = submit(grid, [{}], function="where")
    with package_agent(grid, tmp_path / "cache", slots=2):
        values = [out["results"][0] for out in outputs(grid, priced, timeout=120)]
        (where,) = outputs(grid, located)
    assert values == pytest.approx(REFERENCE, abs=1e-6, rel=0)
    assert where.startswith(str(tmp_path / "cache"))
