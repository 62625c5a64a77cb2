"""The HTTP API (``/v1/…``, JSON; OpenAPI at ``/openapi.json``): a thin skin on GridService.

``create_app`` puts together the middleware, one router per resource and the error answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from htcgrid import __version__
from htcgrid.api import answers
from htcgrid.api.agents import agents_router
from htcgrid.api.answers import closed_backend as _closed_backend  # noqa: F401 (tests)
from htcgrid.api.auth import auth_router, principal_dependency
from htcgrid.api.common import COMMON_PATH, common_router
from htcgrid.api.dashboard import dashboard_router
from htcgrid.api.functions import functions_router
from htcgrid.api.hot import HotRoutes
from htcgrid.api.metrics import install_metrics
from htcgrid.api.middleware import BodyLimit, RateLimit, TokenBuckets
from htcgrid.api.purge import purge_router
from htcgrid.api.runtimes import runtimes_router
from htcgrid.api.scaling import scaling_router
from htcgrid.api.schemas import ERRORS
from htcgrid.api.sessions import sessions_router
from htcgrid.api.shares import shares_router
from htcgrid.api.uploads import PAYLOAD_PATH, uploads_router
from htcgrid.auth.principals import Authenticator
from htcgrid.errors import GridError
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig
from htcgrid.ttl import TTLChecker


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
    # the hot routes' plain answers sit inside every middleware below (added first: innermost)
    app.add_middleware(HotRoutes, service=service, principal=principal)
    uploads = [(p, service.settings.max_payload_bytes) for p in (PAYLOAD_PATH, COMMON_PATH)]
    app.add_middleware(BodyLimit, max_body_bytes=security.max_body_bytes, uploads=uploads)
    if security.rate_limit_per_second > 0:
        buckets = TokenBuckets(security.rate_limit_per_second, security.rate_limit_burst)
        app.add_middleware(RateLimit, buckets=buckets)
    if auth is not None:
        app.include_router(auth_router(auth, principal))
    app.include_router(functions_router(service.functions, principal, security.max_body_bytes))
    app.include_router(agents_router(service.store, principal))
    app.include_router(shares_router(service.store, principal))
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


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GridError)
    async def grid_error(request: Request, exc: GridError) -> JSONResponse:
        return answers.grid_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answers.invalid(exc, request.headers.get("content-type"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return answers.http_error(exc)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        return answers.crash(exc, request.method, request.url.path)
