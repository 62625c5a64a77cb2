"""Sessions of any size: uploaded in parts that appear all at once, results paged by bytes.

In process (memory backends) and through the API app; ``test_big_sessions_e2e.py`` runs the
same through a real ``htcgrid up``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

import htcgrid
from htcgrid.api import create_app
from htcgrid.client import upload as client_upload
from htcgrid.client.http import HTTPTransport
from htcgrid.client.session import Client
from htcgrid.dataplane import keys
from htcgrid.errors import Conflict, NotFound, PayloadTooLarge, ValidationError
from htcgrid.models import Outcome, TaskState
from htcgrid.service import PAGE_BYTES, GridService, SubmitRequest
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.uploads import BUCKET_SECONDS, SWEEP_GRACE_SECONDS

KIB = 1024
MIB = 1024 * KIB


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions of a few hundred KiB go in parts, so the tests stay small."""
    monkeypatch.setattr(client_upload, "SINGLE_REQUEST_BYTES", 200 * KIB)
    monkeypatch.setattr(client_upload, "PART_BYTES", 50 * KIB)
    monkeypatch.setattr(client_upload, "STAGE_ALONE_BYTES", 150 * KIB)


@pytest.fixture
def grid() -> Iterator[Client]:
    client = htcgrid.connect("memory://")
    yield client
    client.close()


def service_of(client: Client) -> GridService:
    return client._t.service  # type: ignore[attr-defined,no-any-return]


def mixed(n: int) -> Iterator[Any]:
    """Small tasks, big ones (sent in parts) and bigger ones (sent on their own), generated
    one at a time."""
    for i in range(n):
        yield {"i": i, "data": ("s" if i % 2 else "B" * (100 + 50 * (i % 4)) * KIB)}


def test_a_generator_too_big_for_one_request_is_uploaded_in_parts(
    grid: Client, small_parts: None
) -> None:
    service = service_of(grid)

    def tasks() -> Iterator[Any]:
        yield from mixed(20)
        assert service.store.list_sessions() == [], "visible before its last task was sent"

    session = grid.submit(tasks(), priority=4, session_id="big-one")
    assert session.task_count == 20 and session.status()["counts"]["pending"] == 20
    big = service.store.get_task(f"{session.id}_0")
    small = service.store.get_task(f"{session.id}_1")
    assert big is not None and big.payload_ref == keys.task_input(session.id, 0)
    assert small is not None and small.payload == b'{"i":1,"data":"s"}'
    assert grid.task(f"{session.id}_2")["payload"] == {"i": 2, "data": "B" * 200 * KIB}
    assert grid.task(f"{session.id}_4")["payload"] == {"i": 4, "data": "B" * 100 * KIB}
    assert service.store.get_task(f"{session.id}_2").payload_ref  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        service.data.get(keys.upload_owner(session.id))  # the upload is gone once committed


def test_resubmits_of_an_uploaded_session_are_no_ops_and_other_content_conflicts(
    grid: Client, small_parts: None
) -> None:
    first = grid.submit(mixed(10), session_id="again")
    before = service_of(grid).data.get(keys.task_input("again", 0))
    again = grid.submit(mixed(10), session_id="again")
    assert (first.id, again.task_count) == ("again", 10)
    with pytest.raises(Conflict):
        grid.submit(({"other": i, "data": "x" * 100 * KIB} for i in range(10)), session_id="again")
    assert service_of(grid).data.get(keys.task_input("again", 0)) == before


def test_the_hash_does_not_depend_on_the_way_a_session_was_sent(grid: Client) -> None:
    tasks = [{"i": i} for i in range(5)]
    grid.submit(tasks, session_id="one-way")
    uploads = service_of(grid).uploads
    uploads.stage_part("one-way", 0, [{"index": i, "payload": t} for i, t in enumerate(tasks)], "")
    result = uploads.commit(SubmitRequest((), session_id="one-way"), 5, 1, "")
    assert result.created is False


def test_an_upload_belongs_to_whoever_began_it() -> None:
    service = GridService(*_memory())
    service.uploads.stage_payload("theirs", 0, b'"x"', "alice")
    with pytest.raises(Conflict):
        service.uploads.stage_payload("theirs", 1, b'"y"', "bob")
    with pytest.raises(Conflict):
        service.uploads.stage_part("theirs", 0, [{"index": 0, "staged": True}], "bob")
    service.uploads.stage_part("theirs", 0, [{"index": 0, "staged": True}], "alice")
    with pytest.raises(Conflict):
        service.uploads.commit(SubmitRequest((), session_id="theirs"), 1, 1, "bob")
    assert service.uploads.commit(SubmitRequest((), session_id="theirs"), 1, 1, "alice").created
    with pytest.raises(Conflict):  # and a committed session is its owner's
        service.uploads.stage_payload("theirs", 0, b'"x"', "bob")


def test_bad_uploads_are_refused_and_leave_nothing() -> None:
    service = GridService(*_memory(), settings=Settings(max_payload_bytes=1000))
    uploads = service.uploads
    with pytest.raises(ValidationError, match="not valid JSON"):
        uploads.stage_payload("bad", 0, b'{"open": ', "")
    with pytest.raises(PayloadTooLarge):
        uploads.stage_payload("bad", 0, b'"' + b"x" * 1000 + b'"', "")
    with pytest.raises(ValidationError, match="index"):
        uploads.stage_payload("bad", -1, b"1", "")
    uploads.stage_part("bad", 0, [{"index": 0, "payload": 1}, {"index": 2, "staged": True}], "")
    with pytest.raises(Conflict, match="payload of task 2 was not uploaded"):
        uploads.commit(SubmitRequest((), session_id="bad"), 3, 1, "")
    uploads.stage_part("bad2", 0, [{"index": 0, "payload": 1}], "")
    with pytest.raises(Conflict, match="part 1 of session bad2 was not uploaded"):
        uploads.commit(SubmitRequest((), session_id="bad2"), 2, 2, "")
    uploads.stage_part("bad2", 1, [{"index": 0, "payload": 2}], "")
    with pytest.raises(Conflict, match="given twice"):
        uploads.commit(SubmitRequest((), session_id="bad2"), 2, 2, "")
    with pytest.raises(Conflict, match="missing"):
        uploads.commit(SubmitRequest((), session_id="bad2"), 2, 1, "")
    with pytest.raises(ValidationError, match="priority"):
        uploads.stage_part("bad", 2, [{"index": 1, "priority": 10, "payload": 1}], "")
    with pytest.raises(NotFound, match="no upload"):
        uploads.commit(SubmitRequest((), session_id="never"), 1, 1, "")
    assert service.store.list_sessions() == []


def test_an_abandoned_upload_expires_and_is_swept() -> None:
    now = [1_000_000.0]
    settings = Settings(upload_expiry_seconds=3600)
    service = GridService(*_memory(), settings=settings, clock=lambda: now[0])
    service.uploads.stage_payload("left", 0, b'"big"', "")
    service.uploads.stage_part("left", 0, [{"index": 0, "staged": True}], "")
    now[0] += 3601
    with pytest.raises(Conflict, match="expired"):
        service.uploads.commit(SubmitRequest((), session_id="left"), 1, 1, "")
    assert service.uploads.sweep(now[0]) == 0  # not before the grace period is over
    assert service.data.get(keys.task_input("left", 0)) == b'"big"'
    now[0] += SWEEP_GRACE_SECONDS + BUCKET_SECONDS
    service.uploads.stage_payload("next", 0, b"1", "")  # a new upload sweeps the old ones
    for gone in (keys.task_input("left", 0), keys.upload_owner("left")):
        with pytest.raises(NotFound):
            service.data.get(gone)
    assert service.data.get(keys.upload_owner("next"))


def test_a_committed_session_survives_the_sweep() -> None:
    now = [2_000_000.0]
    service = GridService(
        *_memory(), settings=Settings(upload_expiry_seconds=60), clock=lambda: now[0]
    )
    service.uploads.stage_payload("kept", 0, b'"big"', "")
    service.uploads.stage_part("kept", 0, [{"index": 0, "staged": True}], "")
    service.uploads.commit(SubmitRequest((), session_id="kept"), 1, 1, "")
    service.uploads.stage_payload("kept", 0, b'"big"', "")  # a re-submit, never committed
    now[0] += 60 + SWEEP_GRACE_SECONDS + 2 * BUCKET_SECONDS
    service.uploads.sweep(now[0])
    assert service.data.get(keys.task_input("kept", 0)) == b'"big"'


def _memory() -> tuple[Any, Any]:
    from htcgrid.dataplane.memory import MemoryDataPlane
    from htcgrid.store.memory import MemoryTaskStore

    return MemoryTaskStore(), MemoryDataPlane()


def _finish(service: GridService, session_id: str, outputs: list[bytes]) -> None:
    """Play the agent: claim every task and record ``outputs`` by reference, in order."""
    leases = service.store.claim("a", len(outputs), 60, service.clock())
    for lease in sorted(leases, key=lambda lease: lease.index):
        key = keys.task_output(session_id, lease.index, lease.attempt)
        service.data.put(key, outputs[lease.index])
        outcome = Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output_ref=key)
        assert service.store.complete("a", [outcome], service.clock()) == [True]


def test_results_are_paged_by_bytes_and_a_huge_output_comes_on_its_own(grid: Client) -> None:
    service = service_of(grid)
    session = grid.submit([0, 1, 2, 3])
    sizes = [3 * MIB, 3 * MIB, 3 * MIB, PAGE_BYTES + 1]
    outputs = [json.dumps("x" * (n - 2)).encode() for n in sizes]
    _finish(service, session.id, outputs)
    pages = []
    after = 0
    while after < 4:
        page = service.results(session.id, after)
        pages.append([(r.index, r.output is not None) for r in page.results])
        after = page.cursor
    assert pages == [[(0, True), (1, True)], [(2, True)], [(3, False)]]
    got = {r.index: r.output for r in session.results()}
    assert got[3] == "x" * (PAGE_BYTES - 1) and got[0] == "x" * (3 * MIB - 2)
    assert grid.task(f"{session.id}_3")["output"] == got[3]


def api_client(service: GridService, security: SecurityConfig) -> Client:
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    transport.http = TestClient(create_app(service, security=security))
    return Client(transport)


def test_over_http_a_payload_may_be_bigger_than_a_json_request(small_parts: None) -> None:
    service = GridService(*_memory(), settings=Settings(max_payload_bytes=3 * MIB))
    grid = api_client(service, SecurityConfig(auth=False, max_body_bytes=1 * MIB))
    with pytest.raises(PayloadTooLarge):
        grid._t.submit({"tasks": ["x" * (2 * MIB)]})  # type: ignore[attr-defined]
    big = "y" * (2 * MIB)
    session = grid.submit(iter([big, "small", big]), session_id="over-http")
    assert session.task_count == 3
    assert grid.task("over-http_2")["payload"] == big
    with pytest.raises(PayloadTooLarge):
        grid.submit(iter(["z" * (3 * MIB)]))
    http = grid._t.http  # type: ignore[attr-defined]
    answer = http.get("/v1/tasks/over-http_0/payload")
    assert answer.status_code == 200 and answer.content == json.dumps(big).encode()
    refused = http.put("/v1/sessions/x/payloads/0", content=b"{not json")
    assert refused.status_code == 400 and "not valid JSON" in refused.json()["error"]["message"]


def test_max_payload_is_set_in_mib_on_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from htcgrid.cli.options import _settings

    monkeypatch.delenv("HTCGRID_MAX_PAYLOAD_BYTES", raising=False)
    assert Settings().max_payload_bytes == 256 * MIB
    assert _settings(max_payload_mb=1.5).max_payload_bytes == 3 * MIB // 2
    assert _settings(max_payload_mb=None).max_payload_bytes == 256 * MIB


def test_an_expired_upload_may_be_submitted_again_and_the_sweep_spares_the_new_one() -> None:
    now = [3_000_000.0]
    settings = Settings(upload_expiry_seconds=60)
    service = GridService(*_memory(), settings=settings, clock=lambda: now[0])
    uploads = service.uploads
    start = now[0]
    uploads.stage_payload("twice", 0, b'"old"', "")
    now[0] = start + BUCKET_SECONDS + 100  # expired, and in the next bucket
    uploads.stage_payload("twice", 0, b'"new"', "")  # starts afresh: a new claim
    uploads.stage_part("twice", 0, [{"index": 0, "staged": True}], "")
    now[0] = start + BUCKET_SECONDS + 60 + SWEEP_GRACE_SECONDS + 1  # the old bucket is due
    assert uploads.sweep(now[0]) == 0  # the new claim is not past its grace yet
    assert service.data.get(keys.task_input("twice", 0)) == b'"new"'
    assert service.data.get(keys.upload_part("twice", 0))
