"""Plain ASGI answers for the routes every round trip takes: submit (``POST /v1/sessions``),
a session's status and a page of its results (``GET /v1/sessions/{id}[/results]``).

FastAPI's machinery (routing through every route, dependency and parameter solving, its
exception and exit-stack layers) cost the server about as much CPU per request as the work
itself. This layer sits inside the app's own middlewares (request timer, rate limit, body
limit), so they apply as before, and answers a well-formed request of those three routes
itself, calling the same functions as the FastAPI routes (``htcgrid.api.sessions``): the same
security schemes read the credentials, the same service call validates the submission, the
same error answers (``htcgrid.api.answers``) map what they raise. Anything else, including a
query parameter not in its plain form, goes on to FastAPI, whose answer (a 400 for a bad
parameter, say) is then the one the caller gets. The FastAPI routes stay for the OpenAPI
document and for those requests.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect, Request

from htcgrid import frames
from htcgrid.api import answers
from htcgrid.api.auth import PrincipalDependency, api_key_scheme, bearer_scheme
from htcgrid.api.middleware import ASGIApp, Receive, Scope, Send
from htcgrid.api.schemas import SessionAnswer
from htcgrid.api.session_work import results_page, session_status, submit_answer
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService

SESSIONS = "/v1/sessions"
INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # what FastAPI reads as an int, and no more
SECONDS = re.compile(r"(0|[1-9][0-9]{0,5})(\.[0-9]{1,9})?")
Query = dict[str, float]  # an int parameter is read as an int


@dataclass(frozen=True)
class RouteLabel:
    """What ``scope["route"]`` carries for the request timer: the route's template."""

    path_format: str


SUBMIT = RouteLabel(SESSIONS)
STATUS = RouteLabel(SESSIONS + "/{session_id}")
RESULTS = RouteLabel(SESSIONS + "/{session_id}/results")


def _int(low: int | None = None, high: int | None = None) -> Callable[[str], int | None]:
    def read(text: str) -> int | None:
        if not INT.fullmatch(text):
            return None
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            return None
        return value

    return read


def _seconds(text: str) -> float | None:
    value = float(text) if SECONDS.fullmatch(text) else -1.0
    return value if 0 <= value <= 60 else None


STATUS_QUERY = {"wait": _seconds}
RESULTS_QUERY = {"cursor": _int(), "after": _int(), "limit": _int(1, 10000), "wait": _seconds}


def plain_query(scope: Scope, readers: Mapping[str, Callable[[str], float | None]]) -> Query | None:
    """The query's parameters of ``readers``, each read by its reader; None when one is
    given twice or is not in its plain form (FastAPI then reads it and answers). Parameters
    the route does not take are ignored, as FastAPI ignores them."""
    raw = scope.get("query_string", b"")
    found: Query = {}
    if not raw:
        return found
    for key, text in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        reader = readers.get(key)
        if reader is None:
            continue
        value = reader(text)
        if value is None or key in found:
            return None
        found[key] = value
    return found


def _optional_int(query: Query, name: str) -> int | None:
    value = query.get(name)
    return None if value is None else int(value)


class HotRoutes:
    """ASGI middleware: answers the hot routes itself (see the module), passes the rest on."""

    def __init__(self, app: ASGIApp, service: GridService, principal: PrincipalDependency) -> None:
        self.app = app
        self.service = service
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._route(scope) if scope["type"] == "http" else None
        if chosen is None:
            await self.app(scope, receive, send)
            return
        label, answer = chosen
        scope["route"] = label
        request = Request(scope, receive)
        try:
            response = await answer(request)
        except ClientDisconnect:
            return
        except Exception as exc:  # every failure answers as the app's handlers do
            response = answers.answer_for(exc, scope["method"], scope["path"])
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[RouteLabel, Callable[[Request], Any]] | None:
        path, method = scope["path"], scope["method"]
        if scope.get("root_path") or not path.startswith(SESSIONS):
            return None
        if path == SESSIONS:
            if method != "POST" or (query := plain_query(scope, STATUS_QUERY)) is None:
                return None
            return SUBMIT, lambda request: self._submit(request, query.get("wait", 0.0))
        parts = path[len(SESSIONS) + 1 :].split("/")
        if method != "GET" or path[len(SESSIONS)] != "/" or not parts[0] or len(parts) > 2:
            return None
        if len(parts) == 1 and (query := plain_query(scope, STATUS_QUERY)) is not None:
            return STATUS, lambda request: self._status(request, parts[0], query)
        if parts[1:] == ["results"] and (query := plain_query(scope, RESULTS_QUERY)) is not None:
            return RESULTS, lambda request: self._results(request, parts[0], query)
        return None

    async def _as_caller(self, request: Request, work: Callable[[Principal], Any]) -> Any:
        """Authenticate and ``work`` in one worker thread, as the FastAPI routes do."""
        bearer = await bearer_scheme(request)
        api_key = await api_key_scheme(request)
        return await anyio.to_thread.run_sync(lambda: work(self.principal(bearer, api_key)))

    async def _submit(self, request: Request, wait: float) -> Response:
        raw = await request.body()
        status, answer = await self._as_caller(
            request, lambda c: submit_answer(self.service, raw, c, wait)
        )
        return Response(answer, status, media_type="application/json")

    async def _status(self, request: Request, session_id: str, query: Query) -> Response:
        wait = query.get("wait", 0.0)

        def work(caller: Principal) -> dict[str, Any]:
            found = session_status(self.service, session_id, wait, caller)
            return SessionAnswer.model_validate(found).model_dump(mode="json")

        return JSONResponse(await self._as_caller(request, work))

    async def _results(self, request: Request, session_id: str, query: Query) -> Response:
        cursor, after = _optional_int(query, "cursor"), _optional_int(query, "after")
        limit, wait = int(query.get("limit", 1000)), query.get("wait", 0.0)

        framed = frames.accepts(request.headers.get("accept"))

        def work(caller: Principal) -> bytes:
            return results_page(
                self.service, session_id, cursor, after, limit, wait, caller, framed
            )

        page = await self._as_caller(request, work)
        return Response(page, media_type=frames.MEDIA_TYPE if framed else "application/json")
