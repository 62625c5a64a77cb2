"""``PUT /v1/sessions/{session_id}/common``: a session's common data, sent before its submit
(up to the payload limit): a JSON value (``Content-Type: application/json``) or bytes
(``application/octet-stream``). It never changes once set."""

from __future__ import annotations

import re
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request

from htcgrid.api.auth import PrincipalDependency
from htcgrid.api.schemas import json_body
from htcgrid.api.uploads import SESSION_IN_PATH
from htcgrid.auth.principals import Principal
from htcgrid.common_data import BYTES, JSON
from htcgrid.service import GridService

COMMON_PATH = re.compile(r"/v1/sessions/[^/]+/common")  # BodyLimit lets these be big
COMMON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"description": "the common data, a JSON value"}},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary", "description": "bytes"}
            },
        },
    }
}


def common_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["sessions"])
    Caller = Depends(principal)

    @router.put("/v1/sessions/{session_id}/common", openapi_extra=COMMON_BODY)
    async def put_common(
        request: Request, session_id: str = SESSION_IN_PATH, caller: Principal = Caller
    ) -> dict[str, Any]:
        """Set the session's common data, every task's ``context.common``."""
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            json_body(raw)  # refused here if it is not JSON
            blob = JSON + raw
        else:
            blob = BYTES + raw
        put = service.uploads.put_common
        return await anyio.to_thread.run_sync(put, session_id, blob, caller.name)

    return router
