"""Document: a JSON value on the data plane that loses no concurrent change, on every backend."""

from __future__ import annotations

import json
import threading

from htcgrid.dataplane import DataPlane
from htcgrid.dataplane.document import Document


def test_read_update_and_a_legacy_head(data: DataPlane) -> None:
    doc = Document(data, "auth/index/users.json")
    assert doc.read() is None
    data.put("auth/index/users.json", json.dumps(["old"]).encode())
    assert doc.read() == ["old"]
    assert doc.update(lambda names: [*names, "new"]) == ["old", "new"]
    assert Document(data, "auth/index/users.json").read() == ["old", "new"]


def test_a_stale_head_is_caught_up_by_following_generations(data: DataPlane) -> None:
    doc = Document(data, "functions/f/index.json")
    doc.update(lambda _: 1)
    doc.update(lambda n: n + 1)
    data.put("functions/f/index.json", json.dumps({"generation": 1, "value": 1}).encode())
    assert doc.read() == 2
    assert doc.update(lambda n: n + 1) == 3


def test_concurrent_updates_are_all_kept(data: DataPlane) -> None:
    doc = Document(data, "auth/index/keys.json")
    start = threading.Barrier(4)

    def add(worker: int) -> None:
        start.wait(timeout=30)
        for i in range(10):
            doc.update(lambda items, w=worker, i=i: sorted([*(items or []), f"{w}-{i}"]))

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert doc.read() == sorted(f"{w}-{i}" for w in range(4) for i in range(10))
