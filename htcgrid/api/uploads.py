"""Routes for sessions too big for one request, and for payloads and outputs too big to carry
in a JSON answer: uploads in parts (``htcgrid.uploads``) and raw downloads."""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from htcgrid import frames
from htcgrid.api.auth import PrincipalDependency
from htcgrid.api.schemas import Attempts, Priority, Seconds, json_body, request_body
from htcgrid.auth.principals import Principal
from htcgrid.models import (
    DEFAULT_FUNCTION,
    MAX_PRIORITY,
    MIN_PRIORITY,
    NAME_PATTERN,
    SESSION_ID_PATTERN,
)
from htcgrid.service import GridService, SubmitResult
from htcgrid.settings import Settings
from htcgrid.submission import commit_from_json
from htcgrid.uploads import MAX_PARTS

SESSION_IN_PATH = Path(pattern=SESSION_ID_PATTERN.pattern)
PAYLOAD_PATH = re.compile(r"/v1/sessions/[^/]+/payloads/[0-9]+")  # BodyLimit lets these be big


MAX_TASKS = Settings.max_tasks_per_submit  # the default; a server's own setting is checked too
Index = Annotated[int, Field(ge=0, le=MAX_TASKS - 1)]


class PartEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: Index
    priority: int | None = Field(None, ge=MIN_PRIORITY, le=MAX_PRIORITY)
    payload: Any = Field(None, description="The task's event (when not staged).")
    staged: StrictBool = Field(False, description="Uploaded on its own to .../payloads/{index}.")
    deps: list[Any] | None = Field(
        None, description="The tasks it depends on: indexes of this session, or task ids."
    )


class PartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tasks: list[PartEntry] = Field(min_length=1)


class CommitBody(BaseModel):
    """The session's options, as in a one-request submit, and the shape of its upload (as the
    OpenAPI document states it: the route reads the body itself, the service checks it)."""

    model_config = ConfigDict(extra="forbid")
    task_count: int = Field(
        ge=1, le=MAX_TASKS, description="Indexes 0 … task_count-1 (a server may allow fewer)."
    )
    parts: int = Field(ge=1, le=MAX_PARTS, description="Parts uploaded: 0 … parts-1.")
    priority: Priority = 0  # the one-request submit's types: no coerced strings or booleans
    function: str = Field(DEFAULT_FUNCTION, pattern=NAME_PATTERN.pattern)
    max_attempts: Attempts | None = None
    timeout_seconds: Seconds | None = None
    retry_on_error: StrictBool = False


class StagedPayload(BaseModel):
    index: int
    bytes: int
    sha256: str


class StagedPart(BaseModel):
    part: int
    tasks: int


RAW_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"description": "one task's event"}}},
    }
}
RAW_JSON_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"description": "the JSON as stored"}}}}
}


def _part_body(raw: bytes) -> PartBody:
    """A part, parsed with the fast JSON reader (parts are most of a big session's bytes)
    and checked against ``PartBody`` as a declared body would be."""
    try:
        return PartBody.model_validate(json_body(raw))
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


PART_BODY = request_body(PartBody)
COMMIT_BODY = request_body(CommitBody)


def uploads_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["sessions"])
    Caller = Depends(principal)
    uploads = service.uploads

    @router.put(
        "/v1/sessions/{session_id}/payloads/{index}",
        response_model=StagedPayload,
        openapi_extra=RAW_JSON_BODY,
    )
    async def stage_payload(
        request: Request,
        session_id: str = SESSION_IN_PATH,
        index: int = Path(ge=0, le=MAX_TASKS - 1),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """Upload one task's payload (its JSON, streamed), for a session sent in parts."""
        payload = await request.body()
        return await anyio.to_thread.run_sync(
            uploads.stage_payload, session_id, index, payload, caller.name
        )

    @router.put(
        "/v1/sessions/{session_id}/parts/{part}",
        response_model=StagedPart,
        openapi_extra=PART_BODY,
    )
    async def stage_part(
        request: Request,
        session_id: str = SESSION_IN_PATH,
        part: int = Path(ge=0, le=MAX_PARTS),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """Upload part ``part`` of a session's task list: JSON, or framed (the task list,
        then each payload's JSON raw, ``Content-Type: application/x-htcgrid-frames``)."""
        raw = await request.body()
        if request.headers.get("content-type", "").startswith(frames.MEDIA_TYPE):
            tasks = await anyio.to_thread.run_sync(frames.part, raw)
        else:
            tasks = [t.model_dump(exclude_unset=True) for t in _part_body(raw).tasks]
        del raw
        count = await anyio.to_thread.run_sync(
            uploads.stage_part, session_id, part, tasks, caller.name
        )
        return {"part": part, "tasks": count}

    def commit_raw(raw: bytes, session_id: str, owner: str) -> SubmitResult:
        request, task_count, parts = commit_from_json(json_body(raw), session_id)
        return uploads.commit(request, task_count, parts, owner)

    @router.post("/v1/sessions/{session_id}/commit", status_code=201, openapi_extra=COMMIT_BODY)
    async def commit(
        request: Request, session_id: str = SESSION_IN_PATH, caller: Principal = Caller
    ) -> JSONResponse:
        """Create the session from its parts: all its tasks appear together, or none. The
        service checks the body, with the words of a one-request submit."""
        raw = await request.body()
        result = await anyio.to_thread.run_sync(commit_raw, raw, session_id, caller.name)
        return JSONResponse(result.as_dict(), status_code=201 if result.created else 200)

    @router.get("/v1/tasks/{task_id}/output", tags=["tasks"], responses=RAW_JSON_ANSWER)
    def task_output(task_id: str, caller: Principal = Caller) -> Response:
        """A finished task's output, however big, as its JSON."""
        return Response(service.task_output(task_id, caller.owner), media_type="application/json")

    @router.get("/v1/tasks/{task_id}/payload", tags=["tasks"], responses=RAW_JSON_ANSWER)
    def task_payload(task_id: str, caller: Principal = Caller) -> Response:
        """A task's payload, however big, as its JSON."""
        return Response(service.task_payload(task_id, caller.owner), media_type="application/json")

    return router
