"""The routes every round trip uses (submit, status, results) authenticate and work in one
worker thread: a sync dependency would cost a thread hop of its own. They still refuse a
caller without credentials before looking at anything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.service import GridService
from htcgrid.store import open_store


@pytest.fixture
def grid() -> Iterator[tuple[TestClient, dict[str, str], list[int]]]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("alice", "a password long enough", "user")
    _, key = auth.create_key("alice")
    hops: list[int] = []
    real = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        hops.append(1)
        return await real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, TestClient(create_app(service, auth=auth)) as http:
        patch.setattr(anyio.to_thread, "run_sync", counting)
        yield http, {"Authorization": f"Bearer {key}"}, hops


def test_a_round_trip_takes_one_thread_hop_per_request(
    grid: tuple[TestClient, dict[str, str], list[int]],
) -> None:
    http, headers, hops = grid
    answer = http.post("/v1/sessions", json={"tasks": [1]}, headers=headers)
    assert answer.status_code == 201 and len(hops) == 1
    sid = answer.json()["session_id"]
    for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/results"):
        hops.clear()
        assert http.get(path, headers=headers).status_code == 200
        assert len(hops) == 1, path


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/sessions", b"not json"),
        ("GET", "/v1/sessions/s1?wait=0", None),
        ("GET", "/v1/sessions/s1/results?cursor=1&after=2", None),
    ],
)
def test_without_credentials_the_answer_is_401_whatever_else_is_wrong(
    grid: tuple[TestClient, dict[str, str], list[int]], method: str, path: str, body: Any
) -> None:
    http, _, _ = grid
    answer = http.request(method, path, content=body)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
