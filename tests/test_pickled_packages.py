"""The packages a pickled call imports are checked against the agents' before it is sent, and
by the worker before it is unpickled, each in one line naming the package on both sides."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import click
import cloudpickle
import pytest
from grid_process import GridProcess, htcgrid_up

import htcgrid
from htcgrid import pickled, pickled_packages
from htcgrid.client.executor import runtime_info

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def styled(text: str) -> str:
    return click.unstyle(click.style(text, bold=True))


def only_python(text: str) -> str:
    return json.dumps(os.path.basename(text))


def test_the_modules_a_pickle_imports_are_read_from_its_opcodes() -> None:
    modules = pickled_packages.imported_modules(cloudpickle.dumps(styled))
    assert "click" in modules
    assert pickled_packages.imported_modules(cloudpickle.dumps([((1, "a"), {"k": 2.0})])) == set()


def test_python_s_own_modules_are_no_package() -> None:
    needed = pickled_packages.packages_of([cloudpickle.dumps(only_python)])
    assert "click" not in needed and not {"json", "os", "posixpath"} & set(needed)
    assert pickled_packages.packages_of([cloudpickle.dumps(styled)])["click"] == metadata.version(
        "click"
    )


def test_a_mismatch_names_each_package_on_both_sides() -> None:
    wanted = {"click": "8.1.7", "numpy": "2.1.0", "same": "1.2.3"}
    have = {"click": "8.2.0", "same": "1.2.9"}
    assert pickled_packages.packages_mismatch(wanted, have) == (
        "click 8.1 here, 8.2 there; numpy 2.1 here, not installed there"
    )
    assert pickled_packages.packages_mismatch({"same": "1.2.3"}, have) is None


def test_a_worker_refuses_a_call_whose_packages_it_lacks_before_unpickling_it() -> None:
    event = pickled.call_event(
        base64.b64encode(b"not a pickle").decode(),
        [((1,), {})],
        pickled.local_versions(),
        {"no-such-distribution": "1.0"},
    )
    with pytest.raises(ImportError, match=r"no-such-distribution 1\.0 here, not installed there"):
        pickled.lambda_handler(event, None)


@pytest.fixture
def client_only_package(tmp_path: Path) -> Iterator[str]:
    """A distribution installed in this (the client's) process alone: a module on sys.path
    with its metadata, which the grid's agents, other processes, do not have."""
    (tmp_path / "probe_only_here").mkdir()
    (tmp_path / "probe_only_here" / "__init__.py").write_text("def twice(x):\n    return 2 * x\n")
    info = tmp_path / "probe_only_here-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-only-here\nVersion: 1.2.0\n")
    (info / "top_level.txt").write_text("probe_only_here\n")
    sys.path.insert(0, str(tmp_path))
    pickled_packages.installed_packages.cache_clear()
    pickled_packages._distributions_of_module.cache_clear()
    try:
        yield "probe-only-here"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("probe_only_here", None)
        pickled_packages.installed_packages.cache_clear()
        pickled_packages._distributions_of_module.cache_clear()


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid"), auth=True) as up:
        yield up
        assert up.stop() == 0


def test_submit_refuses_a_call_no_agent_can_import(
    grid: GridProcess, client_only_package: str
) -> None:
    import probe_only_here  # type: ignore[import-not-found]

    def uses_the_probe(x: int) -> int:
        return int(probe_only_here.twice(x))

    client = htcgrid.connect(grid.url, api_key=grid.credentials["api_key"])
    deadline = time.monotonic() + 30
    while not (agents := runtime_info(client)["agents"]):  # until the agent has announced
        assert time.monotonic() < deadline, "no agent announced itself"
        time.sleep(0.05)
    assert all(a["packages"]["click"] == metadata.version("click") for a in agents), agents
    with htcgrid.Executor(grid.url, client=client) as ex:
        assert ex.submit(styled, "ok").result(60) == "ok"  # what the agents have passes
        with pytest.raises(
            htcgrid.RuntimeMismatch, match=r"probe-only-here 1\.2 here, not installed"
        ):
            ex.submit(uses_the_probe, 2)
        with pytest.raises(htcgrid.RuntimeMismatch, match="probe-only-here"):
            list(ex.map(uses_the_probe, [1, 2]))
    client.close()
