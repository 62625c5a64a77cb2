"""The HTTP API (``/v1/…``, JSON; OpenAPI at ``/openapi.json``): a thin skin on GridService."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
)
from starlette.exceptions import HTTPException

from htcgrid import __version__
from htcgrid.api.agents import agents_router
from htcgrid.api.auth import auth_router, principal_dependency
from htcgrid.api.functions import functions_router
from htcgrid.api.middleware import BodyLimit, RateLimit, TokenBuckets
from htcgrid.api.scaling import scaling_router
from htcgrid.api.uploads import PAYLOAD_PATH, uploads_router
from htcgrid.auth.principals import Authenticator, Principal
from htcgrid.auth.records import KEY_ID_PATTERN
from htcgrid.errors import BackendUnavailable, GridError, TooManyRequests
from htcgrid.models import (
    DEFAULT_FUNCTION,
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    MAX_TIMEOUT_SECONDS,
    MIN_PRIORITY,
    NAME_PATTERN,
    SESSION_ID_PATTERN,
)
from htcgrid.service import NO_TASKS, GridService, SubmitRequest
from htcgrid.settings import SecurityConfig
from htcgrid.ttl import TTLChecker
from htcgrid.wire import cancel_dict, results_json, task_dict

log = logging.getLogger("htcgrid.api")


def _whole_number(value: Any) -> Any:
    """JSON's idea of an integer: 3 or 3.0, never "3" or true."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY), BeforeValidator(_whole_number)]
Attempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS), BeforeValidator(_whole_number)]
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS), BeforeValidator(_number)]


class SubmitBody(BaseModel):
    """A session. The schema states the shape; the service checks every rule (the bounds
    here are its constants), the limits a server is configured with too."""

    model_config = ConfigDict(extra="forbid")
    tasks: list[Any] = Field(
        min_length=1, description="One JSON value per task: the handler's event."
    )
    session_id: str | None = Field(
        None,
        pattern=SESSION_ID_PATTERN.pattern,
        description="Client-chosen id; re-submitting it with the same content is a no-op.",
    )
    priority: Priority = Field(0, description="0-9, higher runs first.")
    task_priorities: list[Priority] | None = None
    function: str = Field(DEFAULT_FUNCTION, pattern=NAME_PATTERN.pattern)
    max_attempts: Attempts | None = Field(None, description="Default: the grid's setting.")
    timeout_seconds: Seconds | None = Field(None, description="Default: the grid's setting.")
    retry_on_error: StrictBool = False


class SubmitAnswer(BaseModel):
    session_id: str
    task_count: int
    created: bool
    warning: str | None = Field(None, description="e.g. that no agent serves this grid")


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorAnswer(BaseModel):
    error: ErrorBody


class SessionAnswer(BaseModel):
    session_id: str
    task_count: int
    function: str
    priority: int
    max_attempts: int
    timeout_seconds: float
    owner: str
    created_at: float
    complete: bool
    cancelled: bool
    done_count: int
    counts: dict[str, int]


class SessionList(BaseModel):
    sessions: list[SessionAnswer]


class TaskError(BaseModel):
    type: str
    message: str
    traceback: str


class TaskResult(BaseModel):
    task_id: str
    index: int
    state: str
    attempts: int
    output: Any = None
    output_url: str | None = Field(
        None, description="Set when the output is too big for this answer: GET it on its own."
    )
    error: TaskError | None = None


class ResultsAnswer(BaseModel):
    results: list[TaskResult]
    next: int
    complete: bool


class CancelAnswer(BaseModel):
    session_id: str
    cancelled_pending: int
    cancelled_processing: int
    total_cancelled_tasks: int


class TaskDetail(TaskResult):
    session_id: str
    payload: Any = None
    payload_url: str | None = Field(
        None, description="Set when the payload is too big for this answer: GET it on its own."
    )
    log: str
    owner: str | None = None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer} for code in (400, 401, 403, 404, 409, 413, 429, 503)
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(
    service: GridService,
    ttl: TTLChecker | None = None,
    auth: Authenticator | None = None,
    security: SecurityConfig | None = None,
) -> FastAPI:
    """The API app. With ``auth`` None every caller is an admin (``--no-auth``)."""
    security = security or SecurityConfig()
    principal = principal_dependency(auth)
    Caller = Depends(principal)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # long polls hold a thread each; the default 40 would cap waiting clients
        anyio.to_thread.current_default_thread_limiter().total_tokens = 512
        if ttl is not None:
            ttl.start()
        yield
        if ttl is not None:
            ttl.stop()

    app = FastAPI(title="htcgrid", version=__version__, lifespan=lifespan, responses=ERRORS)
    _install_error_handlers(app)
    uploads = [(PAYLOAD_PATH, service.settings.max_payload_bytes)]
    app.add_middleware(BodyLimit, max_body_bytes=security.max_body_bytes, uploads=uploads)
    if security.rate_limit_per_second > 0:
        buckets = TokenBuckets(security.rate_limit_per_second, security.rate_limit_burst)
        app.add_middleware(RateLimit, buckets=buckets)
    if auth is not None:
        app.include_router(auth_router(auth, principal))
    app.include_router(functions_router(service.functions, principal, security.max_body_bytes))
    app.include_router(agents_router(service.store, principal))
    app.include_router(scaling_router(service, principal))
    app.include_router(uploads_router(service, principal))

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/sessions", response_model=SubmitAnswer, status_code=201, tags=["sessions"])
    def submit(body: SubmitBody, caller: Principal = Caller) -> JSONResponse:
        result = service.submit(SubmitRequest(**body.model_dump()), owner=caller.name)
        return JSONResponse(result.as_dict(), status_code=201 if result.created else 200)

    @app.get("/v1/sessions", response_model=SessionList, tags=["sessions"])
    def sessions(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        found = service.sessions(caller.owner, limit, offset)
        return {"sessions": [s.as_dict() for s in found]}

    @app.get("/v1/sessions/{session_id}", response_model=SessionAnswer, tags=["sessions"])
    def status(
        session_id: str, wait: float = Query(0, ge=0, le=60), caller: Principal = Caller
    ) -> dict[str, Any]:
        return service.status(session_id, caller.owner, wait_seconds=wait).as_dict()

    @app.get("/v1/sessions/{session_id}/results", response_model=ResultsAnswer, tags=["sessions"])
    def results(
        session_id: str,
        after: int = Query(0, ge=0, description="the `next` of the previous page"),
        limit: int = Query(1000, ge=1, le=10000),
        wait: float = Query(0, ge=0, le=60, description="seconds to wait for a new result"),
        caller: Principal = Caller,
    ) -> Response:
        page = service.results(session_id, after, limit, wait, owner=caller.owner)
        return Response(results_json(page), media_type="application/json")

    @app.post("/v1/sessions/{session_id}/cancel", response_model=CancelAnswer, tags=["sessions"])
    def cancel(session_id: str, caller: Principal = Caller) -> dict[str, Any]:
        return cancel_dict(session_id, service.cancel(session_id, caller.owner))

    @app.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    def delete(session_id: str, caller: Principal = Caller) -> Response:
        service.delete(session_id, caller.owner)
        return Response(status_code=204)

    @app.get("/v1/tasks/{task_id}", response_model=TaskDetail, tags=["tasks"])
    def task(task_id: str, caller: Principal = Caller) -> dict[str, Any]:
        return task_dict(service.task(task_id, caller.owner))

    return app


PATTERNS = {
    NAME_PATTERN.pattern: "must be 1-64 letters, digits, '.', '_' or '-', "
    "starting with a letter or digit",
    SESSION_ID_PATTERN.pattern: "must be 1-64 letters, digits or '-'",
    KEY_ID_PATTERN.pattern: "must be an API key id (16 hexadecimal digits)",
}


def _explain(error: Any) -> str:
    """Pydantic's message, in words for the patterns a caller cannot be expected to read."""
    if error.get("type") == "too_short" and tuple(error.get("loc", ()))[-1:] == ("tasks",):
        return NO_TASKS  # the service's wording, so both paths say the same
    pattern = str((error.get("ctx") or {}).get("pattern"))
    return PATTERNS.get(pattern) or str(error.get("msg", "invalid"))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GridError)
    async def grid_error(request: Request, exc: GridError) -> JSONResponse:
        headers = None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(max(1, round(exc.retry_after_seconds + 0.5)))}
        elif exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return error_response(exc.status, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {_explain(e)}")
        return error_response(400, "invalid_request", "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        if _closed_backend(exc):
            message = "the grid's store is closed (the server is stopping); retry shortly"
            return error_response(503, BackendUnavailable.code, message)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error: {type(exc).__name__}")


CLOSED_ERRORS = {"ProgrammingError", "InterfaceError", "PoolClosed", "OperationalError"}


def _closed_backend(exc: Exception) -> bool:
    """A backend closed under a running request (a long poll while the server stops): the
    drivers say so in their own words, and the caller should retry, not report a bug."""
    return type(exc).__name__ in CLOSED_ERRORS and "closed" in str(exc).lower()
