"""The data plane contract, run against every backend."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from htcgrid.dataplane import DataPlane, keys, open_data_plane
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


def test_two_deletes_of_one_prefix_at_once_both_succeed(data: DataPlane) -> None:
    """A client that timed out retries a commit while the first one still runs: both delete
    the upload's parts, and neither may fail on what the other removed first."""
    for round_ in range(5):
        sid = f"s{round_}"
        for i in range(200):
            data.put(keys.task_input(sid, i), b"x")
        assert _delete_twice_at_once(data, keys.session_prefix(sid)) == []
        with pytest.raises(NotFound):
            data.get(keys.task_input(sid, 0))


def _delete_twice_at_once(data: DataPlane, prefix: str) -> list[BaseException]:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def delete() -> None:
        start.wait()
        try:
            data.delete_prefix(prefix)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=delete) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


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


def test_put_if_absent_keeps_the_first_value(data: DataPlane) -> None:
    key = "functions/f/1.zip"
    assert data.put_if_absent(key, b"first") is True
    assert data.put_if_absent(key, b"second") is False
    assert data.get(key) == b"first"
    data.delete(key)
    assert data.put_if_absent(key, b"third") is True
    assert data.get(key) == b"third"


RACE_KEYS = 40


def _race(data: DataPlane, writer: str, start: threading.Barrier | None = None) -> list[str]:
    """Try to take every race key; return the ones this writer won."""
    if start is not None:
        start.wait(timeout=30)
    return [
        f"race/{i}" for i in range(RACE_KEYS) if data.put_if_absent(f"race/{i}", writer.encode())
    ]


def test_put_if_absent_has_one_winner_among_threads(data: DataPlane) -> None:
    start = threading.Barrier(2)
    won: dict[str, list[str]] = {}
    threads = [
        threading.Thread(target=lambda w=w: won.update({w: _race(data, w, start)}))
        for w in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    _assert_one_winner_each(data, won)


def _race_in_process(
    url: str, writer: str, out: multiprocessing.Queue[tuple[str, list[str]]]
) -> None:
    data = open_data_plane(url)
    out.put((writer, _race(data, writer)))
    data.close()


def test_put_if_absent_has_one_winner_among_processes(data: DataPlane, data_url: str) -> None:
    if data_url.startswith("memory"):
        pytest.skip("an in-process data plane cannot be shared between processes")
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[tuple[str, list[str]]] = ctx.Queue()
    procs = [ctx.Process(target=_race_in_process, args=(data_url, w, out)) for w in ("a", "b")]
    for p in procs:
        p.start()
    won = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    _assert_one_winner_each(data, won)


def _assert_one_winner_each(data: DataPlane, won: dict[str, list[str]]) -> None:
    taken = [key for keys_ in won.values() for key in keys_]
    assert sorted(taken) == sorted(f"race/{i}" for i in range(RACE_KEYS))
    for writer, keys_ in won.items():
        for key in keys_:
            assert data.get(key) == writer.encode()
