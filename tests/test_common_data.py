"""A session's common data: stored once, given to every task as ``context.common``, read
from the data plane at most once per worker per session (counted at the data plane)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_handlers_path import HERE

import htcgrid
from htcgrid import common_data
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.client.session import Client
from htcgrid.errors import Conflict, PayloadTooLarge, ValidationError
from htcgrid.presence import list_agents
from htcgrid.settings import Settings

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0)


def grid_with(tmp_path: Path, handler: str) -> Iterator[Client]:
    client = htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}")
    service = client._t.service  # type: ignore[attr-defined]
    worker = WorkerConfig(f"common_handlers.{handler}", (HERE,))
    runner = Agent(service.store, service.data, FAST, worker, 2)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not list_agents(service.store, time.time()):  # seen: no NoAgentWarning
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield client
    runner.stop()
    thread.join(timeout=30)
    client.close()


@pytest.fixture
def sizes(tmp_path: Path) -> Iterator[Client]:
    yield from grid_with(tmp_path, "common_size")


@pytest.fixture
def values(tmp_path: Path) -> Iterator[Client]:
    yield from grid_with(tmp_path, "common_value")


def test_a_50_mib_blob_is_read_at_most_once_per_worker(sizes: Client) -> None:
    blob = os.urandom(50 * 2**20)
    outputs = sizes.submit([{}] * 10_000, common=blob).outputs(timeout=300)
    assert {o["size"] for o in outputs} == {len(blob)}
    reads_per_worker: dict[int, int] = {}
    for o in outputs:
        reads_per_worker[o["pid"]] = max(reads_per_worker.get(o["pid"], 0), o["reads"])
    assert 1 <= len(reads_per_worker) <= 2 and set(reads_per_worker.values()) == {1}


def test_common_data_is_a_json_value_or_bytes_and_none_without(values: Client) -> None:
    curve = {"tenors": [1, 2, 5], "rates": [0.01, 0.015, 0.02]}
    assert values.submit([1, 2], common=curve).outputs(timeout=60) == [curve, curve]
    assert values.submit([1]).outputs(timeout=60) == [None]


@pytest.mark.filterwarnings("ignore::htcgrid.NoAgentWarning")
def test_set_once_per_session_and_within_the_payload_limit(tmp_path: Path) -> None:
    client = htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}")
    uploads = client._t.service.uploads  # type: ignore[attr-defined]
    blob = common_data.encode({"a": 1})
    assert uploads.put_common("s-1", blob, "")["bytes"] == len(blob)
    assert uploads.put_common("s-1", blob, "")  # the same again: a retried submit
    with pytest.raises(Conflict, match="other common data"):
        uploads.put_common("s-1", common_data.encode({"a": 2}), "")
    client.submit([1], session_id="s-2")
    with pytest.raises(Conflict, match="already in use"):
        uploads.put_common("s-2", blob, "someone-else")
    with pytest.raises(ValidationError):
        uploads.put_common("s-3", b"not encoded", "")
    uploads.service.settings = Settings(max_payload_bytes=10)
    with pytest.raises(PayloadTooLarge):
        uploads.put_common("s-4", common_data.encode("x" * 20), "")
    client.close()


def test_encoding_keeps_bytes_and_json_apart() -> None:
    for value in (b"\x00raw", {"k": [1, 2]}, "text", 3, None):
        assert common_data.decode(common_data.encode(value)) == value
    reads: list[str] = []
    cache = common_data.WorkerCommon(lambda sid: reads.append(sid) or common_data.encode(sid))
    assert [cache.get("a"), cache.get("a"), cache.get("b"), cache.get("a")] == ["a", "a", "b", "a"]
    assert reads == ["a", "b"]
