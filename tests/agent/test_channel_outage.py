"""A worker waits out an outage of the data plane instead of charging the task an attempt.

The data plane here is the real file data plane behind a wrapper that answers
BackendUnavailable a given number of times: the outage is simulated at our own boundary (the
DataPlane interface), as a restarting database would show it. Time is injected: the test's
clock advances by each backoff the worker sleeps, so nothing waits.
"""

from __future__ import annotations

from multiprocessing import Pipe
from pathlib import Path

import pytest

from htcgrid.agent import channel as channel_module
from htcgrid.agent.channel import AgentChannel
from htcgrid.agent.messages import Task
from htcgrid.dataplane import open_data_plane
from htcgrid.dataplane.base import DataPlane
from htcgrid.errors import BackendUnavailable


class Blinking(DataPlane):
    """The file data plane, unavailable for its first ``down`` calls."""

    def __init__(self, inner: DataPlane, down: int) -> None:
        self.inner, self.down, self.calls = inner, down, 0

    def _call(self) -> None:
        self.calls += 1
        if self.calls <= self.down:
            raise BackendUnavailable("the database is restarting")

    def put(self, key: str, data: bytes) -> None:
        self._call()
        self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._call()
        return self.inner.put_if_absent(key, data)

    def get(self, key: str) -> bytes:
        self._call()
        return self.inner.get(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def delete_prefix(self, prefix: str) -> int:
        return self.inner.delete_prefix(prefix)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _channel(tmp_path: Path, down: int) -> tuple[AgentChannel, Blinking, FakeTime]:
    time = FakeTime()
    ours, _theirs = Pipe()
    channel = AgentChannel(
        ours, f"file://{tmp_path}", inline_limit_bytes=16, sleep=time.sleep, clock=lambda: time.now
    )
    plane = Blinking(open_data_plane(f"file://{tmp_path}"), down)
    channel._data = plane  # the boundary under test: what the worker reads and writes through
    return channel, plane, time


def _task(payload_ref: str | None = None) -> Task:
    payload = None if payload_ref else b'{"x": 1}'
    return Task("t1", "s1", 1, 60.0, "s1/t1/out", payload=payload, payload_ref=payload_ref)


def test_a_result_is_stored_once_the_data_plane_is_back(tmp_path: Path) -> None:
    channel, plane, time = _channel(tmp_path, down=4)
    big = b'"' + b"x" * 100 + b'"'
    result = channel.run(_task(), lambda task, payload: (True, big, "log"))
    assert result.ok and not result.infrastructure and result.output_ref == "s1/t1/out"
    assert plane.inner.get("s1/t1/out") == big
    assert len(time.slept) == 4 and time.slept == sorted(time.slept)  # backing off


def test_a_payload_is_read_once_the_data_plane_is_back(tmp_path: Path) -> None:
    channel, plane, _ = _channel(tmp_path, down=2)
    plane.inner.put("s1/t1/in", b'{"big": true}')
    seen: list[bytes] = []

    def execute(task: Task, payload: bytes) -> tuple[bool, bytes, str]:
        seen.append(payload)
        return True, b"1", ""

    assert channel.run(_task(payload_ref="s1/t1/in"), execute).ok
    assert seen == [b'{"big": true}']


def test_an_outage_longer_than_the_patience_is_an_infrastructure_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channel_module, "OUTAGE_PATIENCE_SECONDS", 30.0)
    channel, _, time = _channel(tmp_path, down=10**6)
    result = channel.run(_task(), lambda task, payload: (True, b'"' + b"y" * 100 + b'"', ""))
    assert not result.ok and result.infrastructure
    assert result.error is not None and result.error.type == "BackendUnavailable"
    assert "cannot store the task's result" in result.error.message
    assert 30.0 <= time.now < 40.0  # gave up at the patience, not at the first error
