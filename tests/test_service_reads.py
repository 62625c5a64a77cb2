"""What a submit reads from the task store: a plain session is created without a read before
it (a read per submit was a fifth of a round trip's store calls); an existing one is read
only when the create meets it, and the answers are those a read first gave."""

from __future__ import annotations

from typing import Any

import pytest

from htcgrid.dataplane import open_data_plane
from htcgrid.errors import Conflict
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings
from htcgrid.store import open_store


def counted(reads: list[str], settings: Settings | None = None) -> GridService:
    service = GridService(open_store("memory://"), open_data_plane("memory://"), settings)
    read = service.store.get_session

    def get_session(session_id: str) -> Any:
        reads.append(session_id)
        return read(session_id)

    service.store.get_session = get_session  # type: ignore[method-assign]
    return service


def test_a_new_plain_session_is_created_without_reading_it_first() -> None:
    reads: list[str] = []
    service = counted(reads)
    answer = service.submit(SubmitRequest([1, 2], session_id="fresh"), owner="alice")
    assert answer.created and reads == []
    assert service.store.count_states("fresh")  # it is there


def test_a_resubmit_reads_the_session_once_and_creates_nothing() -> None:
    reads: list[str] = []
    service = counted(reads)
    service.submit(SubmitRequest([1, 2], session_id="again"), owner="alice")
    answer = service.submit(SubmitRequest([1, 2], session_id="again"), owner="alice")
    assert not answer.created and reads == ["again"]


@pytest.mark.parametrize("tasks", [[1], [1, 2, 3]], ids=["same content", "other content"])
def test_another_owners_session_id_is_in_use_whatever_the_content(tasks: list[int]) -> None:
    service = counted([])
    service.submit(SubmitRequest([1], session_id="hers"), owner="alice")
    with pytest.raises(Conflict, match="already in use"):
        service.submit(SubmitRequest(tasks, session_id="hers"), owner="bob")
    assert service.session("hers").spec.owner == "alice"
    assert service.session("hers").spec.task_count == 1


def test_the_owners_own_session_with_other_content_is_a_conflict_of_content() -> None:
    service = counted([])
    service.submit(SubmitRequest([1], session_id="mine"), owner="alice")
    with pytest.raises(Conflict, match="different content"):
        service.submit(SubmitRequest([1, 2], session_id="mine"), owner="alice")


def test_a_session_with_a_large_payload_is_still_read_first() -> None:
    """Its payload goes to the data plane before the create, and only for a new session."""
    reads: list[str] = []
    service = counted(reads, Settings(inline_limit_bytes=10))
    service.submit(SubmitRequest(["x" * 20], session_id="big"), owner="alice")
    assert reads == ["big"]
    with pytest.raises(Conflict, match="already in use"):
        service.submit(SubmitRequest(["y" * 20], session_id="big"), owner="bob")
    assert service.task_payload("big_0") == b'"' + b"x" * 20 + b'"'
