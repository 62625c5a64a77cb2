"""A waiting read of results that finds some but not a full page lingers for more (up to
``LINGER_SECONDS``, or until the session completes), so a client paging a stream of results
asks once per batch instead of once per result; a complete session answers at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from htcgrid import service as service_module
from htcgrid.dataplane import open_data_plane
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService, ResultsPage, SubmitRequest
from htcgrid.store import open_store


def _grid(url: str) -> tuple[GridService, str]:
    service = GridService(open_store(url), open_data_plane("memory://"))
    sid = service.submit(SubmitRequest(tasks=list(range(10)))).session_id
    return service, sid


def _finish(service: GridService, n: int) -> None:
    leases = service.store.claim("agent", n, 60.0, service.clock())
    assert len(leases) == n
    done = [Outcome(x.task_id, x.attempt, TaskState.FINISHED, output=b"1") for x in leases]
    assert all(service.store.complete("agent", done, service.clock()))


@pytest.mark.parametrize("url", ["memory://", "sqlite://{tmp}/grid.db"])
def test_a_reader_with_one_new_result_waits_for_the_rest(
    url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "LINGER_SECONDS", 30.0)
    service, sid = _grid(url.format(tmp=tmp_path))
    _finish(service, 1)
    lingering = threading.Event()
    wait_for_session = service.store.wait_for_session

    def spied(*args: Any) -> int:
        lingering.set()  # the reader found one result and waits for more
        return wait_for_session(*args)

    monkeypatch.setattr(service.store, "wait_for_session", spied)
    pages: list[ResultsPage] = []
    reader = threading.Thread(target=lambda: pages.append(service.results(sid, 0, 1000, 30.0)))
    started = time.monotonic()
    reader.start()
    assert lingering.wait(10)
    _finish(service, 9)
    reader.join(20)
    assert not reader.is_alive()
    assert len(pages[0].results) == 10 and pages[0].complete
    assert time.monotonic() - started < 20  # the completion ended the linger, not its 30 s


def test_a_reader_that_finds_a_full_page_or_a_complete_session_does_not_linger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "LINGER_SECONDS", 30.0)
    service, sid = _grid("memory://")
    _finish(service, 4)
    started = time.monotonic()
    page = service.results(sid, 0, 3, 30.0)  # a full page of 3 is there already
    assert len(page.results) == 3 and not page.complete
    _finish(service, 6)
    rest = service.results(sid, page.cursor, 1000, 30.0)
    assert len(rest.results) == 7 and rest.complete
    assert time.monotonic() - started < 10


def test_a_linger_ends_by_its_time_with_what_there_is() -> None:
    service, sid = _grid("memory://")
    _finish(service, 1)
    started = time.monotonic()
    page = service.results(sid, 0, 1000, 30.0)
    waited = time.monotonic() - started
    assert len(page.results) == 1 and not page.complete
    assert waited + 0.01 >= service_module.LINGER_SECONDS  # it lingered, for its time only
    assert waited < 10
