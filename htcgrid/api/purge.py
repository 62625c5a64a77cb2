"""Sessions after the fact: ``POST /v1/purge?older_than=SECONDS`` deletes the sessions that
ended longer ago than that, their tasks and data-plane objects included (admins only; the
server also does this by itself with its ``retention_seconds``); ``POST
/v1/sessions/{id}/retry`` runs a session's failed tasks again, in place (its owner or an admin).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from htcgrid.api.auth import PrincipalDependency, require_admin
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService


class PurgeAnswer(BaseModel):
    purged: list[str] = Field(description="The ids of the sessions deleted, oldest first.")


class RetryBody(BaseModel):
    task_ids: list[str] | None = Field(
        None, max_length=1_000_000, description="Only these tasks (default: every failed one)."
    )


class RetryAnswer(BaseModel):
    session_id: str
    retried: list[str] = Field(
        description="The tasks sent back to the queue, in index order: those that had failed. "
        "Their new outcomes follow in the session's results, with new cursor numbers."
    )


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

    @router.post("/v1/sessions/{session_id}/retry", response_model=RetryAnswer)
    def retry(
        session_id: str, body: RetryBody | None = None, caller: Principal = Caller
    ) -> RetryAnswer:
        task_ids = None if body is None else body.task_ids
        retried = service.retry(session_id, task_ids, caller.owner)
        return RetryAnswer(session_id=session_id, retried=retried)

    return router
