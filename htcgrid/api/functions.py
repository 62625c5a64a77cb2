"""``/v1/functions``: deploy, list, show, roll back and delete worker functions over the API.

A deploy is the package itself as the request body (``application/zip``), streamed and hashed
as it arrives; the options are query parameters, and ``sha256`` (when given) must match the
bytes received, so a package damaged on the way is refused rather than run. Anyone signed in
may read; deploying, rolling back and deleting need the admin or deployer role.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from htcgrid.api.auth import PrincipalDependency
from htcgrid.auth.principals import Principal
from htcgrid.errors import Forbidden, PayloadTooLarge, ValidationError
from htcgrid.functions import FunctionRegistry
from htcgrid.models import NAME_PATTERN

NAME_IN_PATH = Path(pattern=NAME_PATTERN.pattern, description="The function's name.")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
ZIP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class VersionAnswer(BaseModel):
    name: str
    version: int
    handler: str
    runtime: str
    sha256: str
    size_bytes: int
    timeout_seconds: float | None = None
    memory_mb: int
    created_at: float


class FunctionAnswer(BaseModel):
    name: str
    current: int
    versions: list[VersionAnswer]


class FunctionList(BaseModel):
    functions: list[FunctionAnswer]


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="The version to make current.")


def require_deployer(caller: Principal) -> None:
    if not caller.may_deploy:
        raise Forbidden("deploying functions needs the admin or deployer role")


async def read_package(request: Request, limit_bytes: int, sha256: str | None) -> bytes:
    """The request body, refused past ``limit_bytes``, checked against ``sha256``, and a zip."""
    digest, buffer = hashlib.sha256(), bytearray()
    async for chunk in request.stream():
        if len(buffer) + len(chunk) > limit_bytes:
            raise PayloadTooLarge(f"a package may be at most {limit_bytes} bytes")
        digest.update(chunk)
        buffer += chunk
    if sha256 is not None and digest.hexdigest() != sha256:
        raise ValidationError(
            f"the package received has sha256 {digest.hexdigest()}, not {sha256}: "
            "it was damaged on the way; upload it again"
        )
    if not zipfile.is_zipfile(io.BytesIO(buffer)):
        raise ValidationError("the package must be a zip file (send a directory zipped)")
    return bytes(buffer)


def functions_router(
    registry: FunctionRegistry, principal: PrincipalDependency, max_package_bytes: int
) -> APIRouter:
    router = APIRouter(tags=["functions"])
    Caller = Depends(principal)

    @router.get("/v1/functions", response_model=FunctionList)
    def list_functions(caller: Principal = Caller) -> dict[str, Any]:
        """Every deployed function with its versions."""
        records = [registry.record(name) for name in registry.names()]
        return {"functions": [r.as_dict() for r in records]}

    @router.get("/v1/functions/{name}", response_model=FunctionAnswer)
    def show(name: str = NAME_IN_PATH, caller: Principal = Caller) -> dict[str, Any]:
        """One function: its versions and which one is current."""
        return registry.record(name).as_dict()

    @router.post(
        "/v1/functions/{name}",
        response_model=VersionAnswer,
        status_code=201,
        openapi_extra=ZIP_BODY,
    )
    async def deploy(
        request: Request,
        name: str = NAME_IN_PATH,
        handler: str = Query("", max_length=256, description="module.function"),
        runtime: Literal["python", "provided"] = "python",
        timeout_seconds: float | None = Query(None, gt=0, le=7 * 86400),
        memory_mb: int = Query(0, ge=0, le=1 << 20),
        sha256: str | None = Query(None, pattern=SHA256_PATTERN),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """Upload a zip as the next version of ``name`` and make it current."""
        require_deployer(caller)
        package = await read_package(request, max_package_bytes, sha256)
        deployed = await anyio.to_thread.run_sync(
            lambda: registry.deploy(name, package, handler, runtime, timeout_seconds, memory_mb)
        )
        return deployed.as_dict()

    @router.post("/v1/functions/{name}/rollback", response_model=VersionAnswer)
    def rollback(
        body: RollbackBody, name: str = NAME_IN_PATH, caller: Principal = Caller
    ) -> dict[str, Any]:
        """Make an earlier (or any existing) version current again."""
        require_deployer(caller)
        return registry.rollback(name, body.version).as_dict()

    @router.delete("/v1/functions/{name}", status_code=204)
    def delete(name: str = NAME_IN_PATH, caller: Principal = Caller) -> Response:
        """Forget a function and every version of it."""
        require_deployer(caller)
        registry.delete(name)
        return Response(status_code=204)

    return router
