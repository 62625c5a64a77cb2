"""``POST /v1/purge?older_than=SECONDS``: delete the sessions that ended longer ago than that,
their tasks and data-plane objects included (admins only). The server also does this by
itself with its ``retention_seconds``; this is for freeing space now."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from htcgrid.api.auth import PrincipalDependency, require_admin
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService


class PurgeAnswer(BaseModel):
    purged: list[str] = Field(description="The ids of the sessions deleted, oldest first.")


def purge_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["sessions"])
    Caller = Depends(principal)

    @router.post("/v1/purge", response_model=PurgeAnswer)
    def purge(
        older_than: float = Query(..., ge=0, description="seconds since the session ended"),
        max_sessions: int = Query(10_000, ge=1, le=1_000_000),
        caller: Principal = Caller,
    ) -> PurgeAnswer:
        require_admin(caller)
        return PurgeAnswer(purged=service.purge(older_than, max_sessions))

    return router
