"""The work of the routes every round trip takes (submit, status, a page of results), done in
a worker thread once the caller is known: shared by their FastAPI routes
(``htcgrid.api.sessions``) and their plain ASGI answers (``htcgrid.api.hot``), so both paths
check and answer alike."""

from __future__ import annotations

from typing import Any

from htcgrid.api.schemas import json_body
from htcgrid.auth.principals import Principal
from htcgrid.errors import ValidationError
from htcgrid.service import GridService, SubmitRequest, SubmitResult
from htcgrid.wire import results_json


def submit_session(service: GridService, raw: bytes, caller: Principal) -> SubmitResult:
    """A submit's work (also ``htcgrid.api.hot``'s): its body read and checked by the service,
    so each rule answers as it does in process."""
    return service.submit(SubmitRequest.from_json(json_body(raw)), owner=caller.name)


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
