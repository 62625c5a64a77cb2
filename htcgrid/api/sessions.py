"""Sessions and their tasks: submit, list, status, results, cancel, delete; one task in full."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from htcgrid.api.auth import PrincipalDependency
from htcgrid.api.schemas import (
    CancelAnswer,
    ResultsAnswer,
    SessionAnswer,
    SessionList,
    SubmitAnswer,
    SubmitBody,
    TaskDetail,
    json_body,
    request_body,
)
from htcgrid.auth.principals import Principal
from htcgrid.errors import ValidationError
from htcgrid.service import GridService, SubmitRequest, SubmitResult
from htcgrid.wire import cancel_dict, results_json, task_dict

SUBMIT_BODY = request_body(SubmitBody)


def sessions_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter()
    Caller = Depends(principal)

    def submit_raw(raw: bytes, owner: str) -> SubmitResult:
        return service.submit(SubmitRequest.from_json(json_body(raw)), owner=owner)

    @router.post(
        "/v1/sessions",
        response_model=SubmitAnswer,
        status_code=201,
        tags=["sessions"],
        openapi_extra=SUBMIT_BODY,
    )
    async def submit(request: Request, caller: Principal = Caller) -> JSONResponse:
        """Submit a session. Its body is read here and checked by the service, so each rule
        answers as it does in process (the schema documents the shape)."""
        raw = await request.body()
        result = await anyio.to_thread.run_sync(submit_raw, raw, caller.name)
        return JSONResponse(result.as_dict(), status_code=201 if result.created else 200)

    @router.get("/v1/sessions", response_model=SessionList, tags=["sessions"])
    def sessions(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        found = service.sessions(caller.owner, limit, offset)
        return {"sessions": [s.as_dict() for s in found]}

    @router.get("/v1/sessions/{session_id}", response_model=SessionAnswer, tags=["sessions"])
    def status(
        session_id: str, wait: float = Query(0, ge=0, le=60), caller: Principal = Caller
    ) -> dict[str, Any]:
        return service.status(session_id, caller.owner, wait_seconds=wait).as_dict()

    @router.get(
        "/v1/sessions/{session_id}/results", response_model=ResultsAnswer, tags=["sessions"]
    )
    def results(
        session_id: str,
        cursor: int | None = Query(None, description="the `cursor` of the previous page"),
        after: int | None = Query(None, description="the old name of `cursor`", deprecated=True),
        limit: int = Query(1000, ge=1, le=10000),
        wait: float = Query(0, ge=0, le=60, description="seconds to wait for a new result"),
        caller: Principal = Caller,
    ) -> Response:
        if cursor is not None and after is not None and cursor != after:
            raise ValidationError("cursor and after (its old name) disagree: give one")
        position = after if cursor is None else cursor
        page = service.results(session_id, position or 0, limit, wait, owner=caller.owner)
        return Response(results_json(page), media_type="application/json")

    @router.post("/v1/sessions/{session_id}/cancel", response_model=CancelAnswer, tags=["sessions"])
    def cancel(session_id: str, caller: Principal = Caller) -> dict[str, Any]:
        return cancel_dict(session_id, service.cancel(session_id, caller.owner))

    @router.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    def delete(session_id: str, caller: Principal = Caller) -> Response:
        service.delete(session_id, caller.owner)
        return Response(status_code=204)

    @router.get("/v1/tasks/{task_id}", response_model=TaskDetail, tags=["tasks"])
    def task(task_id: str, caller: Principal = Caller) -> dict[str, Any]:
        return task_dict(service.task(task_id, caller.owner))

    return router
