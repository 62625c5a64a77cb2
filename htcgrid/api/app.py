"""The HTTP API (``/v1/…``, JSON; OpenAPI at ``/openapi.json``): a thin skin on GridService.

``create_app`` puts together the middleware, one router per resource and the error answers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from htcgrid import __version__
from htcgrid.api.agents import agents_router
from htcgrid.api.auth import auth_router, principal_dependency
from htcgrid.api.common import COMMON_PATH, common_router
from htcgrid.api.dashboard import dashboard_router
from htcgrid.api.functions import functions_router
from htcgrid.api.metrics import install_metrics
from htcgrid.api.middleware import BodyLimit, RateLimit, TokenBuckets
from htcgrid.api.purge import purge_router
from htcgrid.api.runtimes import runtimes_router
from htcgrid.api.scaling import scaling_router
from htcgrid.api.schemas import ERRORS
from htcgrid.api.sessions import sessions_router
from htcgrid.api.uploads import PAYLOAD_PATH, uploads_router
from htcgrid.auth.principals import Authenticator
from htcgrid.auth.records import KEY_ID_PATTERN
from htcgrid.errors import BackendUnavailable, GridError, TooManyRequests
from htcgrid.models import (
    NAME_PATTERN,
    SESSION_ID_PATTERN,
)
from htcgrid.service import NO_TASKS, GridService
from htcgrid.settings import SecurityConfig
from htcgrid.ttl import TTLChecker

log = logging.getLogger("htcgrid.api")


HTTP_CODES = {
    400: "invalid_request",  # a body FastAPI could not parse (bad JSON, or nested too deeply)
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


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
    uploads = [(p, service.settings.max_payload_bytes) for p in (PAYLOAD_PATH, COMMON_PATH)]
    app.add_middleware(BodyLimit, max_body_bytes=security.max_body_bytes, uploads=uploads)
    if security.rate_limit_per_second > 0:
        buckets = TokenBuckets(security.rate_limit_per_second, security.rate_limit_burst)
        app.add_middleware(RateLimit, buckets=buckets)
    if auth is not None:
        app.include_router(auth_router(auth, principal))
    app.include_router(functions_router(service.functions, principal, security.max_body_bytes))
    app.include_router(agents_router(service.store, principal))
    app.include_router(scaling_router(service, principal))
    app.include_router(purge_router(service, principal))
    app.include_router(runtimes_router(service, principal))
    app.include_router(common_router(service, principal))
    app.include_router(uploads_router(service, principal))
    install_metrics(app, service.store, auth)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(sessions_router(service, principal))
    app.include_router(dashboard_router(service, principal))
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
