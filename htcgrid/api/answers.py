"""What the API answers when a request fails: one function per kind of failure, used by the
app's exception handlers and by the plain routes of ``htcgrid.api.hot`` alike, so a refusal
reads the same whichever path served it. Every body is ``{"error": {"code", "message"}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from htcgrid.auth.records import KEY_ID_PATTERN
from htcgrid.errors import BackendUnavailable, GridError, TooManyRequests
from htcgrid.models import NAME_PATTERN, SESSION_ID_PATTERN
from htcgrid.service import NO_TASKS

log = logging.getLogger("htcgrid.api")

HTTP_CODES = {
    400: "invalid_request",  # a body FastAPI could not parse (bad JSON, or nested too deeply)
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}
PATTERNS = {
    NAME_PATTERN.pattern: "must be 1-64 letters, digits, '.', '_' or '-', "
    "starting with a letter or digit",
    SESSION_ID_PATTERN.pattern: "must be 1-64 letters, digits or '-'",
    KEY_ID_PATTERN.pattern: "must be an API key id (16 hexadecimal digits)",
}
CLOSED_ERRORS = {"ProgrammingError", "InterfaceError", "PoolClosed", "OperationalError"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def grid_error(exc: GridError) -> JSONResponse:
    headers = None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_seconds + 0.5)))}
    elif exc.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(exc.status, exc.code, str(exc), headers)


def explain(error: Any) -> str:
    """Pydantic's message, in words for the patterns a caller cannot be expected to read."""
    if error.get("type") == "too_short" and tuple(error.get("loc", ()))[-1:] == ("tasks",):
        return NO_TASKS  # the service's wording, so both paths say the same
    pattern = str((error.get("ctx") or {}).get("pattern"))
    return PATTERNS.get(pattern) or str(error.get("msg", "invalid"))


# what pydantic says of a body FastAPI did not read as JSON (no JSON Content-Type)
NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type", "model_type"})


def invalid(exc: RequestValidationError, content_type: str | None = None) -> JSONResponse:
    """A request the API's declared types refuse; a JSON body sent without saying it is JSON
    (curl's ``-d`` sends form data) is named as that, not as a body of the wrong shape."""
    errors = exc.errors()
    not_read = any(
        tuple(e.get("loc", ())) == ("body",) and e.get("type") in NOT_AN_OBJECT for e in errors
    )
    if not_read and "json" not in (content_type or ""):
        message = "body: send it as JSON, with the header Content-Type: application/json"
        return error_response(400, "invalid_request", message)
    problems = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        problems.append(f"{where}: {explain(e)}")
    return error_response(400, "invalid_request", "; ".join(problems))


def http_error(exc: HTTPException) -> JSONResponse:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


def crash(exc: Exception, method: str, path: str) -> JSONResponse:
    if closed_backend(exc):
        message = "the grid's store is closed (the server is stopping); retry shortly"
        return error_response(503, BackendUnavailable.code, message)
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    return error_response(500, "internal", f"internal error: {type(exc).__name__}")


def answer_for(exc: Exception, method: str, path: str) -> JSONResponse:
    """The answer to any exception a route raised, as the app's handlers give it."""
    if isinstance(exc, GridError):
        return grid_error(exc)
    if isinstance(exc, RequestValidationError):
        return invalid(exc)
    if isinstance(exc, HTTPException):
        return http_error(exc)
    return crash(exc, method, path)


def closed_backend(exc: Exception) -> bool:
    """A backend closed under a running request (a long poll while the server stops): the
    drivers say so in their own words, and the caller should retry, not report a bug."""
    return type(exc).__name__ in CLOSED_ERRORS and "closed" in str(exc).lower()
