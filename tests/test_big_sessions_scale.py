"""Sessions of millions of tiny tasks: sent in parts by count as well as by bytes, with
progress on a terminal, and committed by the server one part at a time (bounded memory)."""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import backend_url
from test_big_sessions import service_of

import htcgrid
from htcgrid.client import upload as client_upload
from htcgrid.client.session import Client
from htcgrid.dataplane import keys
from htcgrid.errors import Conflict
from htcgrid.service import GridService, SubmitRequest
from htcgrid.uploads import PartedTasks

MIB = 1024 * 1024


@pytest.fixture
def grid() -> Iterator[Client]:
    client = htcgrid.connect("memory://")
    yield client
    client.close()


def test_many_tiny_tasks_go_in_parts_of_bounded_count(
    grid: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_upload, "SINGLE_REQUEST_TASKS", 100)
    monkeypatch.setattr(client_upload, "PART_TASKS", 30)
    sent: list[int] = []
    stage_part = grid._t.stage_part

    def counting(session_id: str, part: int, tasks: list[Any]) -> Any:
        sent.append(len(tasks))
        return stage_part(session_id, part, tasks)

    monkeypatch.setattr(grid._t, "stage_part", counting)
    monkeypatch.setattr(grid._t, "submit", lambda body: pytest.fail("one request"))
    session = grid.submit([{}] * 250)
    assert sorted(sent) == [10] + [30] * 8
    assert session.task_count == 250 and session.status()["counts"]["pending"] == 250
    assert grid.submit(iter([{}] * 101)).task_count == 101  # a generator too
    assert sent[-4:] == [30, 30, 30, 11]


def test_a_list_at_the_count_limit_is_one_request(
    grid: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_upload, "SINGLE_REQUEST_TASKS", 100)
    monkeypatch.setattr(grid._t, "stage_part", lambda *a: pytest.fail("uploaded in parts"))
    assert grid.submit([{}] * 100).task_count == 100


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_upload_shows_its_progress_on_a_terminal_only() -> None:
    now = [0.0]
    shown = Tty()
    progress = client_upload.Progress(shown, clock=lambda: now[0])
    progress.show(20_000)  # too soon after the start: nothing yet
    now[0] = 1.0
    progress.show(40_000)
    progress.show(60_000)  # too soon after the last line
    progress.show(70_000, final=True)
    assert shown.getvalue() == (
        "\rhtcgrid: uploaded 40,000 tasks\rhtcgrid: uploaded 70,000 tasks, committing\n"
    )
    quiet = io.StringIO()  # a pipe or a file: nothing
    progress = client_upload.Progress(quiet, clock=lambda: now[0])
    now[0] = 5.0
    progress.show(10, final=True)
    assert quiet.getvalue() == ""


def upload(service: GridService, session_id: str, parts: list[list[int]]) -> None:
    uploads = service.uploads
    for number, indexes in enumerate(parts):
        entries = [{"index": i, "payload": {"i": i}} for i in indexes]
        uploads.stage_part(session_id, number, entries, "u")


def commit(service: GridService, session_id: str, count: int, parts: int) -> Any:
    return service.uploads.commit(SubmitRequest(tasks=[], session_id=session_id), count, parts, "u")


def test_the_store_gets_the_tasks_one_part_at_a_time(grid: Client) -> None:
    service = service_of(grid)
    upload(service, "lazy", [list(range(i, i + 10)) for i in range(0, 50, 10)])
    reads: list[str] = []
    get = service.data.get

    def counting_get(key: str) -> bytes:
        reads.append(key)
        return get(key)

    service.data.get = counting_get  # type: ignore[method-assign]
    create = service.store.create_session
    seen: list[tuple[int, int]] = []  # (task index, parts read when it came)

    def spying(spec: Any, tasks: Any, now: float) -> bool:
        assert isinstance(tasks, PartedTasks) and len(tasks) == 50
        reads.clear()
        for task in tasks:
            seen.append((task.index, sum(k.startswith(keys.upload_prefix("lazy")) for k in reads)))
        return create(spec, tasks, now)

    service.store.create_session = spying  # type: ignore[method-assign]
    assert commit(service, "lazy", 50, 5).task_count == 50
    assert seen == [(i, i // 10 + 1) for i in range(50)], "parts read ahead of the store"
    assert grid.task("lazy_42")["payload"] == {"i": 42}


def test_parts_in_any_order_commit_and_gaps_or_repeats_conflict(grid: Client) -> None:
    service = service_of(grid)
    upload(service, "shuffled", [[5, 4, 3], [0, 2], [1]])
    assert commit(service, "shuffled", 6, 3).task_count == 6
    assert grid.task("shuffled_3")["payload"] == {"i": 3}
    upload(service, "gap", [[0, 1], [3]])
    with pytest.raises(Conflict, match="missing from the parts, first 2"):
        commit(service, "gap", 4, 2)
    upload(service, "twice", [[0, 1], [1]])
    with pytest.raises(Conflict, match="given twice"):
        commit(service, "twice", 2, 2)
    assert service.store.get_session("gap") is None and service.store.get_session("twice") is None


def test_committing_a_big_session_takes_bounded_memory(tmp_path: Path) -> None:
    """60,000 tiny tasks on SQLite: the commit's peak of traced memory stays near that of a
    part, far below what holding the session's tasks takes (over 30 MiB)."""
    count, per_part = 60_000, 5_000
    with htcgrid.connect(f"sqlite://{tmp_path / 'grid.db'}") as client:
        service = service_of(client)
        for number in range(count // per_part):
            rows = [
                [i, None, "{}", None] for i in range(number * per_part, (number + 1) * per_part)
            ]
            service.uploads._begin("big", "u")
            service.data.put(keys.upload_part("big", number), htcgrid.models.json_dumps(rows))
        del rows
        tracemalloc.start()
        try:
            assert commit(service, "big", count, count // per_part).task_count == count
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 * MIB, f"the commit held {peak / MIB:.0f} MiB"
        assert service.store.count_states("big")[htcgrid.TaskState.PENDING] == count


def test_a_session_sent_in_parts_commits_on_every_backend(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_upload, "SINGLE_REQUEST_TASKS", 40)
    monkeypatch.setattr(client_upload, "PART_TASKS", 16)
    with contextlib.ExitStack() as stack:
        data = None
        if store_url.startswith("aws:"):  # the AWS store keeps no blobs: S3 beside it
            data = stack.enter_context(backend_url("s3", tmp_path, "data"))
        client = stack.enter_context(htcgrid.connect(store_url, data_url=data))
        session = client.submit([{"i": i} for i in range(100)], task_priorities=[1] * 100)
        assert session.task_count == 100 and session.status()["counts"]["pending"] == 100
        assert client.task(f"{session.id}_99")["payload"] == {"i": 99}
        again = client.submit(
            [{"i": i} for i in range(100)], session_id=session.id, task_priorities=[1] * 100
        )
        assert again.task_count == 100  # the same content again: a no-op
        with pytest.raises(Conflict):
            client.submit([{"i": -i} for i in range(100)], session_id=session.id)
