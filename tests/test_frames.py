"""Framed bodies (``htcgrid.frames``): pages of results and parts of an upload carry their
outputs and payloads raw after a JSON header, so neither side turns them into objects and
back. The same page or part, framed or JSON, must read the same, on both routes of results
(the plain ASGI one and FastAPI's), in process, and through the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from htcgrid import frames
from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.client.direct import DirectTransport
from htcgrid.client.session import Client
from htcgrid.client.upload import PartTask, part_frames
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ValidationError
from htcgrid.models import Outcome, TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

# outputs of every kind: strings a slice reads (plain, Unicode, empty) and ones it must not
# (escapes, a quote inside), and values that are not strings at all
OUTPUTS: list[Any] = [
    "plain text",
    "",
    "ünïcödé ✓ 😀",
    'a "quoted" word',
    "back\\slash",
    "line\nbreak\ttab\x01",
    "x" * 200_000,
    {"nested": ["a", 1, 2.5, None, True]},
    [],
    0,
    -1.5e300,
    None,
    False,
]


@pytest.fixture
def grid() -> Iterator[tuple[GridService, TestClient, dict[str, str]]]:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    auth = Authenticator(service.data)
    auth.add_user("alice", "a password long enough", "user")
    _, key = auth.create_key("alice")
    with TestClient(create_app(service, auth=auth)) as http:
        yield service, http, {"Authorization": f"Bearer {key}"}


def _submit_over(http: TestClient, headers: dict[str, str], n: int) -> str:
    answer = http.post("/v1/sessions", json={"tasks": list(range(n))}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["session_id"]  # type: ignore[no-any-return]


def _complete_all(service: GridService, outputs: list[Any]) -> None:
    leases = service.store.claim("agent", len(outputs), 60.0, service.clock())
    assert len(leases) == len(outputs)
    done = [
        Outcome(x.task_id, x.attempt, TaskState.FINISHED, output=orjson.dumps(outputs[x.index]))
        for x in leases
    ]
    assert all(service.store.complete("agent", done, service.clock()))


@pytest.mark.parametrize("query", ["", "?limit=0100"])  # the second goes through FastAPI
def test_a_framed_page_reads_as_its_json_page_on_both_routes(
    grid: tuple[GridService, TestClient, dict[str, str]], query: str
) -> None:
    service, http, headers = grid
    sid = _submit_over(http, headers, len(OUTPUTS))
    _complete_all(service, OUTPUTS)
    path = f"/v1/sessions/{sid}/results{query}"
    plain = http.get(path, headers=headers)
    framed = http.get(path, headers={**headers, "Accept": frames.MEDIA_TYPE})
    assert plain.headers["content-type"].startswith("application/json")
    assert framed.headers["content-type"].startswith(frames.MEDIA_TYPE)
    assert frames.results(framed.content) == plain.json()
    by_index = {r["index"]: r["output"] for r in plain.json()["results"]}
    assert [by_index[i] for i in range(len(OUTPUTS))] == OUTPUTS
    assert len(framed.content) < len(plain.content) + 64 * len(OUTPUTS)  # nothing re-escaped


def test_the_client_reads_framed_pages_in_process(tmp_path: Path) -> None:
    service = GridService(open_store(f"sqlite://{tmp_path}/grid.db"), open_data_plane("memory://"))
    client = Client(DirectTransport.of(service))
    session = client.submit(list(range(len(OUTPUTS))))
    _complete_all(service, OUTPUTS)
    got = {r.index: r.output for r in session.results()}
    assert [got[i] for i in range(len(OUTPUTS))] == OUTPUTS


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_value_reads_as_json_reads_it(output: Any) -> None:
    data = json.dumps(output, ensure_ascii=False).encode()
    assert frames.value(data) == json.loads(data)
    assert frames.value(orjson.dumps(output)) == output


def test_a_framed_part_stores_what_a_json_part_stores(
    grid: tuple[GridService, TestClient, dict[str, str]],
) -> None:
    _, http, headers = grid
    values: list[Any] = ["y" * 300_000, {"k": [1, 2]}, "ü", 7]
    tasks = [PartTask(i, None, None, orjson.dumps(v)) for i, v in enumerate(values)]
    tasks[1] = PartTask(1, 5, None, tasks[1].payload, deps=[0])
    body = part_frames(tasks)
    framed = {**headers, "Content-Type": frames.MEDIA_TYPE}
    assert http.put("/v1/sessions/s-framed/parts/0", content=body, headers=framed).json() == {
        "part": 0,
        "tasks": 4,
    }
    answer = http.post("/v1/sessions/s-framed/commit", json={"task_count": 4, "parts": 1},
                       headers=headers)  # fmt: skip
    assert answer.status_code == 201, answer.text
    listed = http.get("/v1/sessions/s-framed/tasks?state=pending", headers=headers).json()
    payloads = {}
    for item in listed["tasks"]:
        task = http.get(f"/v1/tasks/{item['task_id']}", headers=headers).json()
        payload = task["payload"]
        if payload is None:
            payload = http.get(task["payload_url"], headers=headers).json()
        payloads[task["index"]] = payload
    assert [payloads[i] for i in range(4)] == values


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"tasks":[{"index":0,"payload_bytes":3}]}', "a JSON header, a newline"),
        (b'{"tasks":[{"index":0,"payload_bytes":3}]\n12', "not JSON"),
        (b'{"tasks":[{"index":0,"payload_bytes":5}]}\n123', "ends before"),
        (b'{"tasks":[{"index":0,"payload_bytes":3}]}\n1234', "more than"),
        (b'{"tasks":[{"index":0,"payload_bytes":-1}]}\n', "non-negative"),
        (b'{"tasks":[{"index":0,"payload_bytes":"3"}]}\n123', "non-negative"),
        (b'{"tasks":[{"index":0,"payload_bytes":3}]}\n{1}', "not valid JSON"),
        (b'{"tasks":{"index":0}}\n', "list of tasks"),
        (b'{"tasks":[{"index":0,"payload_json":"1"}]}\n', "has payload_json: it takes"),
    ],
)
def test_a_bad_framed_part_is_a_400_that_says_why(
    grid: tuple[GridService, TestClient, dict[str, str]], body: bytes, words: str
) -> None:
    _, http, headers = grid
    framed = {**headers, "Content-Type": frames.MEDIA_TYPE}
    answer = http.put("/v1/sessions/s-bad/parts/0", content=body, headers=framed)
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]["message"]


def test_a_framed_payload_over_the_limit_is_refused(tmp_path: Path) -> None:
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    limit = service.settings.max_payload_bytes
    too_big = {"index": 0, "payload_json": b'"' + b"x" * limit + b'"'}
    with pytest.raises(Exception, match="the limit is"):
        service.uploads.stage_part("s-big", 0, [too_big], "alice")
    with pytest.raises(ValidationError, match="as bytes"):
        service.uploads.stage_part("s-big", 0, [{"index": 0, "payload_json": "1"}], "alice")


def test_the_http_client_sends_parts_and_reads_pages_framed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the API app: a session big enough to go in parts is sent framed, and its pages
    come back framed; what the client hands back is what the handler returned."""
    from htcgrid.client import upload as client_upload
    from htcgrid.client.http import HTTPTransport
    from htcgrid.settings import SecurityConfig

    monkeypatch.setattr(client_upload, "SINGLE_REQUEST_BYTES", 64 * 1024)
    monkeypatch.setattr(client_upload, "PART_BYTES", 32 * 1024)
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    transport.http = TestClient(create_app(service, security=SecurityConfig(auth=False)))
    seen: list[tuple[str, str, str]] = []
    send = transport.http.send

    def spy(request: Any, **kwargs: Any) -> Any:
        response = send(request, **kwargs)
        kinds = (request.headers.get("content-type", ""), response.headers["content-type"])
        seen.append((request.url.path, *kinds))
        return response

    monkeypatch.setattr(transport.http, "send", spy)
    values = [{"i": i, "text": "é" * (i * 700)} for i in range(40)]
    session = Client(transport).submit(values)
    parts = [kind for path, kind, _ in seen if "/parts/" in path]
    assert len(parts) >= 2 and set(parts) == {frames.MEDIA_TYPE}
    _complete_all(service, [v["text"] for v in values])
    got = {r.index: r.output for r in session.results()}
    assert [got[i] for i in range(40)] == [v["text"] for v in values]
    pages = [kind for path, _, kind in seen if path.endswith("/results")]
    assert pages and all(kind.startswith(frames.MEDIA_TYPE) for kind in pages)
