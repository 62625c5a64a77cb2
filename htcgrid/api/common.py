"""``PUT /v1/sessions/{session_id}/common``: a session's common data, sent before its submit
as the bytes ``htcgrid.common_data.encode`` makes (up to the payload limit)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from htcgrid.api.auth import PrincipalDependency
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService

COMMON_PATH = re.compile(r"/v1/sessions/[^/]+/common")  # BodyLimit lets these be big


def common_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["sessions"])
    Caller = Depends(principal)

    @router.put("/v1/sessions/{session_id}/common")
    async def put_common(session_id: str, request: Request, caller: Principal = Caller) -> Any:
        """The bytes of the body are the common data, encoded (``b`` + bytes or ``j`` + JSON)."""
        blob = await request.body()
        return await run_in_threadpool(service.uploads.put_common, session_id, blob, caller.name)

    return router
