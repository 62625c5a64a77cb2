"""``put_ref``: values read back by the reference their writer gets (payloads, results), on
every data plane; the file plane appends them to one file per session and writer."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from htcgrid.dataplane import DataPlane, keys, open_data_plane
from htcgrid.dataplane.packs import parse_ref
from htcgrid.errors import NotFound

SIZES = [0, 1, 1024, 64 * 1024 + 1, 1024 * 1024]


def test_each_value_reads_back_by_its_ref(data: DataPlane) -> None:
    values = {size: os.urandom(size) for size in SIZES}
    refs = {size: data.put_ref(keys.task_input("s1", size), v) for size, v in values.items()}
    for size, ref in refs.items():
        assert data.get(ref) == values[size]


def test_two_attempts_of_one_key_keep_both_values(data: DataPlane) -> None:
    """A zombie's late result never changes what an earlier reference reads."""
    first = data.put_ref(keys.task_output("s1", 0, 1), b"first attempt")
    second = data.put_ref(keys.task_output("s1", 0, 2), b"second")
    assert (data.get(first), data.get(second)) == (b"first attempt", b"second")


def test_a_deleted_session_takes_its_values_and_a_new_one_of_that_id_works(
    data: DataPlane,
) -> None:
    ref = data.put_ref(keys.task_input("s1", 0), b"old")
    other = data.put_ref(keys.task_input("s2", 0), b"kept")
    data.delete_prefix(keys.session_prefix("s1"))
    with pytest.raises(NotFound):
        data.get(ref)
    again = data.put_ref(keys.task_input("s1", 0), b"new")  # the same id, submitted again
    assert data.get(again) == b"new"
    assert data.get(other) == b"kept"


def test_delete_of_a_ref_is_never_an_error(data: DataPlane) -> None:
    ref = data.put_ref(keys.task_output("s1", 3, 1), b"x")
    data.delete(ref)
    data.delete(ref)


def test_threads_writing_at_once_each_read_their_own(data: DataPlane) -> None:
    start = threading.Barrier(4)
    refs: dict[bytes, str] = {}

    def write(worker: int) -> None:
        start.wait()
        for i in range(50):
            value = f"{worker}:{i}:".encode() * (1 + i)
            refs[value] = data.put_ref(keys.task_input("s1", worker * 100 + i), value)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 200
    assert all(data.get(ref) == value for value, ref in refs.items())


def test_the_file_plane_packs_a_sessions_values_into_one_file(tmp_path: Path) -> None:
    """Creating a file costs ten times writing 100 KiB into an open one: a session's
    payloads from one writer share a file, readable by another process's plane."""
    url = f"file://{tmp_path}"
    writer, reader = open_data_plane(url), open_data_plane(url)
    values = [os.urandom(100 * 1024) for _ in range(20)]
    refs = [writer.put_ref(keys.task_input("s1", i), v) for i, v in enumerate(values)]
    assert [reader.get(ref) for ref in refs] == values
    files = [p for p in (tmp_path / "sessions").rglob("*") if p.is_file()]
    assert len(files) == 1
    assert all(parse_ref(ref) is not None for ref in refs)
    assert parse_ref(keys.task_input("s1", 0)) is None
    writer.close()
    reader.close()


def test_a_ref_past_the_end_of_its_pack_is_not_found(tmp_path: Path) -> None:
    data = open_data_plane(f"file://{tmp_path}")
    ref = data.put_ref(keys.task_input("s1", 0), b"abc")
    pack, offset, _ = parse_ref(ref) or ("", 0, 0)
    with pytest.raises(NotFound):
        data.get(f"{pack}~{offset}~4")
    data.close()


def test_an_uploaded_sessions_big_payloads_share_one_file(tmp_path: Path) -> None:
    """The parts of a big submit put their payloads with put_ref: on the file plane one pack,
    no folder or file per task, and each task reads its own payload back."""
    from htcgrid.service import GridService, SubmitRequest
    from htcgrid.settings import Settings
    from htcgrid.store import open_store

    service = GridService(
        open_store("memory://"),
        open_data_plane(f"file://{tmp_path}"),
        Settings(inline_limit_bytes=10),
    )
    payloads = [json.dumps("x" * (20 + i)) for i in range(6)]
    uploads = service.uploads
    for part in range(2):
        entries = [
            {"index": i, "payload": json.loads(payloads[i])} for i in range(part * 3, part * 3 + 3)
        ]
        assert uploads.stage_part("up1", part, entries, "alice") == 3
    uploads.commit(SubmitRequest(tasks=[], session_id="up1"), 6, 2, "alice")
    assert [service.task_payload(f"up1_{i}") for i in range(6)] == [p.encode() for p in payloads]
    files = list((tmp_path / "sessions" / "up1").iterdir())
    assert len(files) == 1 and files[0].name.startswith(".pack-")
