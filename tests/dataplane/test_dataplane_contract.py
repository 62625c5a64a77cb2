"""The data plane contract, run against every backend."""

from __future__ import annotations

import os

import pytest

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import NotFound


def test_put_get_overwrite_delete(data: DataPlane) -> None:
    key = keys.task_input("s1", 0)
    data.put(key, b"first")
    assert data.get(key) == b"first"
    data.put(key, b"second")
    assert data.get(key) == b"second"
    data.delete(key)
    data.delete(key)
    with pytest.raises(NotFound):
        data.get(key)


def test_binary_and_large_values(data: DataPlane) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    data.put("sessions/s1/s1_0/output.1", blob)
    assert data.get("sessions/s1/s1_0/output.1") == blob


def test_delete_prefix_removes_one_session_only(data: DataPlane) -> None:
    for sid in ("s1", "s10", "s2"):
        for i in range(3):
            data.put(keys.task_input(sid, i), b"x")
    assert data.delete_prefix(keys.session_prefix("s1")) == 3
    with pytest.raises(NotFound):
        data.get(keys.task_input("s1", 0))
    assert data.get(keys.task_input("s10", 0)) == b"x"
    assert data.get(keys.task_input("s2", 2)) == b"x"


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b"])
def test_bad_keys_are_refused(data: DataPlane, key: str) -> None:
    with pytest.raises(ValueError):
        data.put(key, b"x")


def test_keys_refuse_bad_names() -> None:
    with pytest.raises(ValueError):
        keys.task_input("../etc", 0)
    with pytest.raises(ValueError):
        keys.function_package("a/b", 1)
    assert keys.task_output("s1", 3, 2) == "sessions/s1/s1_3/output.2"
