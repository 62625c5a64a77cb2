"""``htcgrid.Executor`` over HTTP against a real ``htcgrid up`` (SQLite + files), with its
authentication: pickled calls, exceptions, the named-function path, who may send pickled
code (checked by the server at submit) and the admin's setting."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import cloudpickle
import httpx
import pytest
from grid_process import GridProcess, htcgrid_up

import htcgrid
from htcgrid import pickled
from htcgrid.client.admin import HTTPAdmin
from htcgrid.client.executor import runtime_info
from htcgrid.errors import Forbidden

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Rejected(Exception):
    pass


def cube(x: int) -> int:
    return x**3


def refuse(x: int) -> int:
    raise Rejected(f"no {x}")


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid"), auth=True) as up:
        admin = HTTPAdmin(up.url, api_key=up.credentials["api_key"])
        admin.add_user("alice", "alice's long password", "user")
        admin.add_user("dora", "dora's long password", "deployer")
        admin.close()
        yield up
        assert up.stop() == 0


def executor(grid: GridProcess, **options: object) -> htcgrid.Executor:
    return htcgrid.Executor(grid.url, api_key=grid.credentials["api_key"], **options)  # type: ignore[arg-type]


def test_calls_map_and_exceptions_over_http(grid: GridProcess) -> None:
    with executor(grid) as ex:
        assert ex.submit(cube, 3).result(60) == 27
        assert list(ex.map(cube, range(30), chunksize=4)) == [i**3 for i in range(30)]
        with pytest.raises(Rejected, match="no 5") as caught:
            ex.submit(refuse, 5).result(60)
        assert "in refuse" in str(caught.value.__cause__)


def weighted(i: int) -> int:
    return sum(pickled.context().common["weights"]) * i


def test_common_data_reaches_pickled_calls_over_http(grid: GridProcess) -> None:
    with executor(grid, common={"weights": [1, 2, 3]}) as ex:
        assert list(ex.map(weighted, range(4))) == [0, 6, 12, 18]
    with executor(grid, common=b"\x00\xffraw") as ex:
        assert ex.submit(common_bytes).result(60) == b"\x00\xffraw"


def common_bytes() -> bytes:
    common: bytes = pickled.context().common
    return common


def test_a_named_function_over_http(grid: GridProcess) -> None:
    events = [{"worker_arguments": [str(i)]} for i in range(5)]
    with executor(grid, function="default") as ex:
        assert list(ex.map(events)) == [0, 1, 2, 3, 4]


def test_the_runtime_answer_names_the_agents_versions(grid: GridProcess) -> None:
    client = htcgrid.connect(grid.url, api_key=grid.credentials["api_key"])
    deadline = time.monotonic() + 30
    while not (info := runtime_info(client))["agents"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert info["policy"] == "role" and info["allowed"]
    assert {a["python"] for a in info["agents"]} == {pickled.local_versions()["python"]}
    client.close()


def _as(grid: GridProcess, user: str) -> dict[str, str]:
    return {"username": user, "password": f"{user}'s long password"}


def test_pickled_code_needs_a_role_and_the_admin_decides(grid: GridProcess) -> None:
    with htcgrid.Executor(grid.url, **_as(grid, "dora")) as ex:  # a deployer
        assert ex.submit(cube, 2).result(60) == 8
    with (
        htcgrid.Executor(grid.url, **_as(grid, "alice")) as ex,
        pytest.raises(Forbidden, match="setting: role"),
    ):
        ex.submit(cube, 2)
    # the server checks too, whatever the client does
    alice = htcgrid.connect(grid.url, **_as(grid, "alice"))
    with pytest.raises(Forbidden, match="'alice' may not submit pickled Python code"):
        alice.submit([{}], function=pickled.PYTHON_FUNCTION)
    headers = {"Authorization": f"Bearer {grid.credentials['api_key']}"}
    with httpx.Client(base_url=grid.url, headers=headers) as http:
        assert http.put("/v1/runtimes/python", json={"policy": "all"}).json()["policy"] == "all"
        assert http.put("/v1/runtimes/python", json={"policy": "x"}).status_code == 400
        with htcgrid.Executor(grid.url, **_as(grid, "alice")) as ex:
            assert ex.submit(cube, 4).result(60) == 64
        assert http.put("/v1/runtimes/python", json={"policy": "off"}).status_code == 200
        assert alice.submit([1]).task_count == 1  # named functions are not affected
        with pytest.raises(Forbidden, match="refuses pickled"):
            alice.submit([{}], function=pickled.PYTHON_FUNCTION)
        http.put("/v1/runtimes/python", json={"policy": "role"})
    alice.close()
