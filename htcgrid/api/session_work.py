"""The work of the routes every round trip takes (submit, status, a page of results), done in
a worker thread once the caller is known: shared by their FastAPI routes
(``htcgrid.api.sessions``) and their plain ASGI answers (``htcgrid.api.hot``), so both paths
check and answer alike."""

from __future__ import annotations

from typing import Any

from htcgrid.api.schemas import json_body
from htcgrid.auth.principals import Principal
from htcgrid.errors import ValidationError
from htcgrid.models import json_dumps
from htcgrid.service import GridService, SubmitRequest, SubmitResult
from htcgrid.wire import FIRST_PAGE, results_json


def submit_session(service: GridService, raw: bytes, caller: Principal) -> SubmitResult:
    """A submit's work (also ``htcgrid.api.hot``'s): its body read and checked by the service,
    so each rule answers as it does in process."""
    return service.submit(SubmitRequest.from_json(json_body(raw)), owner=caller.name)


def submit_answer(
    service: GridService, raw: bytes, caller: Principal, wait: float
) -> tuple[int, bytes]:
    """A submit's status (201 created, 200 submitted before) and JSON answer. With ``wait``,
    the answer also carries the session's first page of results (``"results"``, as ``GET
    …/results`` gives it), waited for up to that long: a short session is one request, not a
    submit and then a wait for its results."""
    result = submit_session(service, raw, caller)
    answer = json_dumps(result.as_dict())
    if wait > 0:
        page = results_page(service, result.session_id, 0, None, FIRST_PAGE, wait, caller)
        answer = answer[:-1] + b',"results":' + page + b"}"
    return (201 if result.created else 200), answer


def session_status(
    service: GridService, session_id: str, wait: float, caller: Principal
) -> dict[str, Any]:
    return service.status(session_id, caller.owner, wait_seconds=wait).as_dict()


def results_page(
    service: GridService,
    session_id: str,
    cursor: int | None,
    after: int | None,
    limit: int,
    wait: float,
    caller: Principal,
    framed: bool = False,
) -> bytes:
    """A page of results as JSON (``after`` is the old name of ``cursor``); ``framed``, its
    outputs after it (``htcgrid.frames``)."""
    if cursor is not None and after is not None and cursor != after:
        raise ValidationError("cursor and after (its old name) disagree: give one")
    position = after if cursor is None else cursor
    page = service.results(session_id, position or 0, limit, wait, caller.owner)
    return results_json(page, framed)
