"""Agents running deployed function packages: versions, rollout, broken packages, the recipe."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from package_helpers import (
    FAST,
    build_wheel,
    finished,
    outputs,
    package_agent,
    pip_install_target,
    submit,
    zip_recipe,
)
from procs import until

from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry, read_package, zip_directory
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

HANDLER = """
import os, time
VERSION = {version}
def lambda_handler(event, context):
    if "started_file" in event:
        open(event["started_file"], "w").close()
    time.sleep(event.get("seconds", 0))
    return {{"version": VERSION, "context_version": context.function_version,
             "function": context.function_name, "event": event, "pid": os.getpid()}}
"""


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    yield GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), FAST)
    store.close()


def deploy_source(grid: GridService, folder: Path, version: int, name: str = "pricing") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "engine.py").write_text(HANDLER.format(version=version))
    FunctionRegistry(grid.data).deploy(name, zip_directory(folder), "engine.lambda_handler")


def test_tasks_run_their_functions_package_and_others_the_agents_handler(
    grid: GridService, tmp_path: Path
) -> None:
    deploy_source(grid, tmp_path / "src", 1)
    priced = submit(grid, [{"n": i} for i in range(20)], function="pricing")
    echoed = submit(grid, [{"n": i} for i in range(5)])
    with package_agent(grid, tmp_path / "cache"):
        priced_out = outputs(grid, priced)
        plain = outputs(grid, echoed)
    assert [o["event"] for o in priced_out] == [{"n": i} for i in range(20)]
    assert {(o["version"], o["context_version"], o["function"]) for o in priced_out} == {
        (1, "1", "pricing")
    }
    assert plain == [{"n": i} for i in range(5)]
    assert next(iter((tmp_path / "cache" / "pricing").iterdir())).name.startswith("v1-")


def test_a_new_version_gets_new_workers_while_running_tasks_finish_on_theirs(
    grid: GridService, tmp_path: Path
) -> None:
    deploy_source(grid, tmp_path / "src", 1)
    with package_agent(grid, tmp_path / "cache", slots=2) as agent:
        started = tmp_path / "started"
        slow = submit(grid, [{"seconds": 1.5, "started_file": str(started)}], function="pricing")
        until(started.exists, what="the v1 task to start")
        deploy_source(grid, tmp_path / "src", 2)
        fresh = submit(grid, [{"n": i} for i in range(4)], function="pricing")
        new = outputs(grid, fresh)
        old = outputs(grid, slow)[0]
        assert {o["version"] for o in new} == {2}
        assert old["version"] == 1 and old["pid"] not in {o["pid"] for o in new}
        FunctionRegistry(grid.data).rollback("pricing", 1)
        again = outputs(grid, submit(grid, [{}], function="pricing"))
        assert again[0]["version"] == 1
        assert len(agent.slots) <= 2


def test_an_unloadable_package_fails_its_tasks_but_not_the_agent(
    grid: GridService, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "engine.py").write_text("raise ImportError('no such engine')\n")
    FunctionRegistry(grid.data).deploy("broken", zip_directory(folder), "engine.lambda_handler")
    bad = submit(grid, [{}, {}], function="broken")
    good = submit(grid, [{"n": 1}])
    with package_agent(grid, tmp_path / "cache"):
        failed = finished(grid, bad)
        assert outputs(grid, good) == [{"n": 1}]
    assert [r.state for r in failed] == [TaskState.FAILED] * 2
    assert failed[0].error.type == "ImportError" and "no such engine" in failed[0].error.message


def test_a_tampered_package_is_not_run(grid: GridService, tmp_path: Path) -> None:
    deploy_source(grid, tmp_path / "src", 1)
    current = FunctionRegistry(grid.data).current("pricing")
    assert current is not None
    grid.data.put(current.package_key, b"not the deployed bytes")
    sid = submit(grid, [{}], function="pricing", max_attempts=1)
    with package_agent(grid, tmp_path / "cache"):
        (result,) = finished(grid, sid)
    assert result.state is TaskState.FAILED and result.error.type == "PackageCorrupt"


def test_the_seeds_recipe_pip_install_target_then_zip_yr(grid: GridService, tmp_path: Path) -> None:
    if shutil.which("zip") is None:
        pytest.skip("needs the zip command")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "tinyquant", "1.0", "def discount(x, r):\n    return x / (1 + r)\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "pricer.py").write_text(
        "import tinyquant\n"
        "def lambda_handler(event, context):\n"
        "    return {'pv': tinyquant.discount(event['x'], event['r']),\n"
        "            'from': tinyquant.__file__}\n"
    )
    pip_install_target(app, "tinyquant", find_links=wheels)
    assert (app / "tinyquant-1.0.dist-info").is_dir()
    package = zip_recipe(app)
    FunctionRegistry(grid.data).deploy("tiny", read_package(package), "pricer.lambda_handler")
    sid = submit(grid, [{"x": 110.0, "r": 0.1}, {"x": 1.0, "r": 0.0}], function="tiny")
    with package_agent(grid, tmp_path / "cache", functions=["tiny"]):
        tiny_out = outputs(grid, sid)
    assert [round(o["pv"], 9) for o in tiny_out] == [100.0, 1.0]
    assert all(o["from"].startswith(str(tmp_path / "cache")) for o in tiny_out)


def test_a_functions_own_timeout_applies_when_shorter(grid: GridService, tmp_path: Path) -> None:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "engine.py").write_text(
        "import time\n\ndef lambda_handler(event, context):\n"
        "    time.sleep(event['seconds'])\n    return context.get_remaining_time_in_millis()\n"
    )
    FunctionRegistry(grid.data).deploy(
        "slow", zip_directory(folder), "engine.lambda_handler", timeout_seconds=0.5
    )
    sid = submit(grid, [{"seconds": 30}, {"seconds": 0}], function="slow", max_attempts=1)
    with package_agent(grid, tmp_path / "cache"):
        timed_out, quick = finished(grid, sid)
    assert timed_out.state is TaskState.FAILED and timed_out.error.type == "TaskTimeout"
    assert "timed out after 0.5 s" in timed_out.error.message
    assert quick.state is TaskState.FINISHED and 0 < int(quick.output) <= 500
