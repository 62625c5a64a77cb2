"""Push wake-ups on the SQLite store: a commit wakes waiters in other connections (threads and
processes share the mechanism) at once, not at their next look; stale sockets are cleaned up;
where unix sockets cannot be used, waiting still works by polling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from htcgrid.models import NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store.sqlite import SQLiteTaskStore
from htcgrid.store.sqlite_wake import DONE, PARKED, WORK, WakeBoard

NOW = 1_000_000.0
LOOK_SECONDS = 60.0  # waiters in these tests look on their own only this rarely
WAIT_SECONDS = 30.0


def open_pair(tmp_path: Path) -> tuple[SQLiteTaskStore, SQLiteTaskStore]:
    """Two stores on one file, as a server and an agent have; the waiter looks on its own
    only every LOOK_SECONDS, so a wait that ends sooner was woken."""
    url = f"sqlite://{tmp_path}/grid.db"
    writer, waiter = SQLiteTaskStore(url), SQLiteTaskStore(url)
    waiter.wakes.fallback_seconds = LOOK_SECONDS
    return writer, waiter


def submit(store: SQLiteTaskStore, sid: str = "s1") -> None:
    spec = SessionSpec(id=sid, task_count=1, content_hash="h", owner="alice")
    assert store.create_session(spec, [NewTask(0, 0, payload=b"1")], NOW)


def in_thread(target: object) -> tuple[threading.Thread, list[object]]:
    answers: list[object] = []
    thread = threading.Thread(target=lambda: answers.append(target()))  # type: ignore[operator]
    thread.start()
    return thread, answers


def wait_until_listening(folder: Path, topic: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if folder.is_dir() and any(n.startswith(f"{topic}-") for n in os.listdir(folder)):
            return
        time.sleep(0.005)  # polling with a deadline: the waiter is another thread
    raise AssertionError(f"nobody listens for {topic} in {folder}")


def test_a_submit_wakes_an_idle_agent_at_once(tmp_path: Path) -> None:
    writer, waiter = open_pair(tmp_path)
    thread, answers = in_thread(lambda: waiter.wait_for_tasks(WAIT_SECONDS))
    wait_until_listening(waiter.wakes.folder, WORK)
    submit(writer)
    thread.join(timeout=WAIT_SECONDS / 3)
    assert not thread.is_alive() and answers == [True]


def test_a_completion_wakes_a_waiting_long_poll_at_once(tmp_path: Path) -> None:
    writer, waiter = open_pair(tmp_path)
    submit(writer)
    (lease,) = writer.claim("agent-1", 1, 10.0, NOW)
    thread, answers = in_thread(lambda: waiter.wait_for_session("s1", 0, WAIT_SECONDS))
    wait_until_listening(waiter.wakes.folder, "done")
    outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=b"2")
    assert writer.complete("agent-1", [outcome], NOW) == [True]
    thread.join(timeout=WAIT_SECONDS / 3)
    assert not thread.is_alive() and answers == [1]


def test_a_waiter_leaves_no_socket_of_its_topic_behind_and_closing_removes_the_rest(
    tmp_path: Path,
) -> None:
    _, waiter = open_pair(tmp_path)
    assert waiter.wait_for_tasks(0.01) is False
    (parked,) = os.listdir(waiter.wakes.folder)
    assert parked.startswith(f"{PARKED}-{os.getpid()}-")  # no sender sends to it
    waiter.wakes.close()
    assert os.listdir(waiter.wakes.folder) == []


def test_a_wait_reuses_a_parked_socket_instead_of_binding_one(tmp_path: Path) -> None:
    board = WakeBoard(tmp_path / "wake", poll_seconds=0.002)
    with board.listening(WORK) as first:
        pass
    with board.listening(DONE) as second:
        assert second.sock is first.sock
        (name,) = os.listdir(board.folder)
        assert name.startswith(f"{DONE}-")
        board.notify(DONE)
        assert second.sock is not None and second.sock.recv(64) == b"!"
    board.close()


def test_a_reused_socket_starts_without_old_wake_ups(tmp_path: Path) -> None:
    board = WakeBoard(tmp_path / "wake", poll_seconds=0.002)
    with board.listening(WORK):
        board.notify(WORK)  # never read: this waiter found its work without waiting
    with board.listening(WORK) as again:
        assert again.sock is not None
        with pytest.raises(BlockingIOError):
            again.sock.recv(64)
    board.close()


def test_the_parked_sockets_of_a_dead_process_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "wake"
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    left = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.bind(str(folder / f"{PARKED}-{int(dead.stdout)}-0"))
    left.close()  # as a killed process leaves it
    board = WakeBoard(folder, poll_seconds=0.002)
    with board.listening(WORK):
        assert [n for n in os.listdir(folder) if n.startswith(PARKED)] == []
    board.close()


def test_a_forked_child_does_not_use_its_parents_parked_sockets(tmp_path: Path) -> None:
    board = WakeBoard(tmp_path / "wake", poll_seconds=0.002)
    with board.listening(WORK) as parents:
        pass
    board._owner = -1  # as a forked child sees it: the board was made in another process
    with board.listening(WORK) as childs:
        assert childs.sock is not parents.sock
        assert len(os.listdir(board.folder)) == 2  # the parent's stays parked, untouched
    board.close()


def test_a_dead_waiters_socket_is_removed_by_the_next_notice(tmp_path: Path) -> None:
    writer, _ = open_pair(tmp_path)
    folder = writer.wakes.folder
    folder.mkdir(exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(folder / f"{WORK}-1-1-1"))
    stale.close()  # as a killed process leaves it: the file stays, nobody reads
    submit(writer)
    assert os.listdir(folder) == []


def test_a_grid_in_a_deep_folder_binds_its_sockets_elsewhere(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    writer, waiter = open_pair(deep)
    assert waiter.wakes.enabled and waiter.wakes.folder == writer.wakes.folder
    assert not waiter.wakes.folder.is_relative_to(deep)
    thread, answers = in_thread(lambda: waiter.wait_for_tasks(WAIT_SECONDS))
    wait_until_listening(waiter.wakes.folder, WORK)
    submit(writer)
    thread.join(timeout=WAIT_SECONDS / 3)
    assert not thread.is_alive() and answers == [True]
    waiter.wakes.close()
    waiter.wakes.folder.rmdir()  # empty again: the waiter removed its socket


def test_without_sockets_waiting_polls(tmp_path: Path) -> None:
    writer, waiter = open_pair(tmp_path)
    waiter.wakes.enabled = False  # as on a system without unix sockets
    waiter.poll_seconds = waiter.wakes.poll_seconds = 0.001
    thread, answers = in_thread(lambda: waiter.wait_for_tasks(WAIT_SECONDS))
    submit(writer)
    thread.join(timeout=WAIT_SECONDS / 3)
    assert not thread.is_alive() and answers == [True]


def test_notify_never_blocks_on_a_waiter_that_does_not_read(tmp_path: Path) -> None:
    board = WakeBoard(tmp_path / "wake", poll_seconds=0.002)
    with board.listening(WORK):
        for _ in range(10_000):  # far more than a socket buffer holds
            board.notify(WORK)
    board.close()
