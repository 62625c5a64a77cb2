"""The dashboard: its page at ``/``, its files under ``/dashboard/``, and the few answers only
it needs under ``/v1/dashboard/…`` (the rest of what it shows comes from the API itself).

The page has no build step and loads nothing from elsewhere: plain HTML, CSS and JavaScript
from ``htcgrid/dashboard/static``, sent with a Content-Security-Policy that allows only this
server. It signs in as the API does (``POST /v1/auth/token``), keeps the token in the tab's
``sessionStorage`` and calls the API with ``Authorization: Bearer``. What a page needs beyond
the API is computed here with bounded reads (``htcgrid.api.dashboard_data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response

from htcgrid.api.auth import PrincipalDependency, require_admin
from htcgrid.api.dashboard_data import Grid, Sessions
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService, SessionStatus

STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
LOST_AFTER_HEARTBEATS = 3  # an agent silent for this many heartbeats (and a lease) is lost


def dashboard_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["dashboard"])
    Caller = Depends(principal)
    settings = service.settings
    lost_after = max(LOST_AFTER_HEARTBEATS * settings.heartbeat_seconds, settings.lease_seconds)
    grid = Grid(service.store, lost_after, service.clock)
    sessions = Sessions(service.store)
    files = {p.name: p for p in STATIC.iterdir() if p.suffix in TYPES} if STATIC.is_dir() else {}

    def static(name: str) -> Response:
        path = files.get(name)
        if path is None:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)

    @router.get("/", include_in_schema=False)
    def page() -> Response:
        return static("index.html")

    @router.get("/dashboard/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        return static(name)

    @router.get("/v1/dashboard/overview")
    def overview(caller: Principal = Caller) -> dict[str, Any]:
        """Grid-wide counts, queue depth, agents, failure rate and an hour of throughput."""
        return grid.overview()

    @router.get("/v1/dashboard/sessions/{session_id}")
    def session_detail(session_id: str, caller: Principal = Caller) -> dict[str, Any]:
        """A session's status, completion curve, duration and queue-wait histograms (from a
        bounded sample), and its failed and retried tasks found so far."""
        info = service.session(session_id, caller.owner)
        status = SessionStatus(info, sessions.counts(info))
        return {"session": status.as_dict(), **sessions.detail(info)}

    @router.get("/v1/dashboard/agents")
    def agents(caller: Principal = Caller) -> dict[str, Any]:
        """Every agent seen in the last day, with its heartbeat age and whether it is lost."""
        require_admin(caller)
        return {"now": service.clock(), "lost_after": lost_after, "agents": grid.agents()}

    return router
