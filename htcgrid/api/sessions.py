"""Sessions and their tasks: submit, list, status, results, cancel, delete; one task in full."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials

from htcgrid import frames
from htcgrid.api.auth import API_KEY, BEARER, PrincipalDependency
from htcgrid.api.schemas import (
    CancelAnswer,
    CancelBody,
    ResultsAnswer,
    SessionAnswer,
    SessionList,
    SubmitAnswer,
    SubmitBody,
    TaskDetail,
    TasksAnswer,
    request_body,
)
from htcgrid.api.session_work import results_page, session_status, submit_answer
from htcgrid.auth.principals import Principal
from htcgrid.models import MAX_CURSOR
from htcgrid.service import GridService
from htcgrid.session_pages import SessionFilter, session_page
from htcgrid.wire import cancel_dict, result_dict, task_dict

SUBMIT_BODY = request_body(SubmitBody)
T = TypeVar("T")
Bearer = HTTPAuthorizationCredentials | None


def sessions_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter()
    Caller = Depends(principal)

    async def as_caller(work: Callable[[Principal], T], bearer: Bearer, api_key: str | None) -> T:
        """Authenticate and ``work`` in one worker thread. The hot routes (submit, status,
        results) take their credentials as parameters instead of ``Caller``: a sync
        dependency costs a thread hop of its own, a tenth of a request's time here."""
        return await anyio.to_thread.run_sync(lambda: work(principal(bearer, api_key)))

    @router.post(
        "/v1/sessions",
        response_model=SubmitAnswer,
        status_code=201,
        responses={200: {"model": SubmitAnswer, "description": "submitted before: created false"}},
        tags=["sessions"],
        openapi_extra=SUBMIT_BODY,
    )
    async def submit(
        request: Request,
        wait: float = Query(
            0, ge=0, le=60, description="seconds to wait for a first page of `results`"
        ),
        bearer: Bearer = BEARER,
        api_key: str | None = API_KEY,
    ) -> Response:
        """Submit a session. Its body is read here and checked by the service, so each rule
        answers as it does in process (the schema documents the shape). With ``wait``, the
        answer also carries ``results``: the session's first page of results, as ``GET
        …/results?wait=`` would give it (a short session is then one request)."""
        raw = await request.body()
        status, answer = await as_caller(
            lambda c: submit_answer(service, raw, c, wait), bearer, api_key
        )
        return Response(answer, status, media_type="application/json")

    @router.get("/v1/sessions", response_model=SessionList, tags=["sessions"])
    def sessions(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=MAX_CURSOR, description="where to start (or `cursor`)"),
        cursor: int | None = Query(
            None, ge=0, le=MAX_CURSOR, description="the `cursor` of the previous page"
        ),
        owner: str | None = Query(None, description="only this owner's (admins)"),
        state: Literal["active", "complete", "cancelled"] | None = Query(None),
        function: str | None = Query(None, description="only sessions of this function"),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """Sessions newest first; ``cursor`` is null on the last page."""
        wanted = SessionFilter(owner or None, state or None, function or None)
        start = offset if cursor is None else cursor
        page = session_page(service, caller.owner, wanted, limit, start)
        return {"sessions": [s.as_dict() for s in page.sessions], "cursor": page.cursor}

    @router.get("/v1/sessions/{session_id}", response_model=SessionAnswer, tags=["sessions"])
    async def status(
        session_id: str,
        wait: float = Query(0, ge=0, le=60),
        bearer: Bearer = BEARER,
        api_key: str | None = API_KEY,
    ) -> dict[str, Any]:
        return await as_caller(
            lambda c: session_status(service, session_id, wait, c), bearer, api_key
        )

    @router.get(
        "/v1/sessions/{session_id}/results", response_model=ResultsAnswer, tags=["sessions"]
    )
    async def results(
        session_id: str,
        cursor: int | None = Query(None, description="the `cursor` of the previous page"),
        after: int | None = Query(None, description="the old name of `cursor`", deprecated=True),
        limit: int = Query(1000, ge=1, le=10000),
        wait: float = Query(0, ge=0, le=60, description="seconds to wait for a new result"),
        bearer: Bearer = BEARER,
        api_key: str | None = API_KEY,
        accept: str | None = Header(None, include_in_schema=False),
    ) -> Response:
        framed = frames.accepts(accept)

        def page(caller: Principal) -> bytes:
            return results_page(service, session_id, cursor, after, limit, wait, caller, framed)

        found = await as_caller(page, bearer, api_key)
        return Response(found, media_type=frames.MEDIA_TYPE if framed else "application/json")

    @router.get("/v1/sessions/{session_id}/tasks", response_model=TasksAnswer, tags=["sessions"])
    def tasks(
        session_id: str,
        state: Literal["pending", "processing", "finished", "failed", "cancelled"] = Query(
            "failed", description="the state of the tasks listed"
        ),
        cursor: str | None = Query(None, description="the `cursor` of the previous page"),
        limit: int = Query(100, ge=1, le=1000),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """A session's tasks in one state, a page at a time, read through the store's index
        of tasks by state: the failed tasks of a session of a million cost a few reads."""
        records, after = service.tasks_in_state(
            session_id, state, cursor or None, limit, owner=caller.owner
        )
        return {"tasks": [result_dict(r) for r in records], "cursor": after}

    @router.post("/v1/sessions/{session_id}/cancel", response_model=CancelAnswer, tags=["sessions"])
    def cancel(
        session_id: str, body: CancelBody | None = None, caller: Principal = Caller
    ) -> dict[str, Any]:
        """Cancel the session's tasks not yet terminal; with a body ``{"tasks": [...]}``, only
        those (task ids or indexes), the rest of the session going on."""
        tasks = None if body is None else body.tasks
        return cancel_dict(session_id, service.cancel(session_id, caller.owner, tasks))

    @router.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    def delete(session_id: str, caller: Principal = Caller) -> Response:
        service.delete(session_id, caller.owner)
        return Response(status_code=204)

    @router.get("/v1/tasks/{task_id}", response_model=TaskDetail, tags=["tasks"])
    def task(task_id: str, caller: Principal = Caller) -> dict[str, Any]:
        return task_dict(service.task(task_id, caller.owner))

    return router
