"""The user and key indexes keep every entry when many processes write them at once."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from htcgrid.auth.records import AuthRecords, KeyRecord, User
from htcgrid.dataplane import open_data_plane


def _add_users(url: str, tag: str, count: int) -> None:
    records = AuthRecords(open_data_plane(url))
    for i in range(count):
        records.put_user(User(f"{tag}{i}", "user", "hash", f"uid{i}", 1, 0.0))
        records.put_key(KeyRecord(f"{tag}{i:015x}"[-16:], f"{tag}{i}", "u", "", "d", 0.0))


def test_concurrent_writers_drop_no_index_entry(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_users, args=(url, tag, 10)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    threads = [threading.Thread(target=_add_users, args=(url, tag, 10)) for tag in ("c", "d")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    records = AuthRecords(open_data_plane(url))
    assert records.user_names() == sorted(f"{t}{i}" for t in "abcd" for i in range(10))
    assert len(records.key_ids()) == 40
    records.delete_user("a0")
    assert "a0" not in records.user_names()
