"""``/v1/runtimes/python``: the built-in function of pickled Python calls (``htcgrid.pickled``).

``GET`` tells any signed-in caller whether the grid takes their pickled code, and which
Python and cloudpickle versions its agents run, so ``htcgrid.Executor`` refuses a mismatch
before it submits. ``PUT {"policy": "role" | "all" | "off"}`` sets who may (admins only)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from htcgrid.api.auth import PrincipalDependency, require_admin
from htcgrid.auth.principals import Principal
from htcgrid.service import GridService


class PythonRuntime(BaseModel):
    policy: str
    allowed: bool
    agents: list[dict[str, Any]]


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: Literal["role", "all", "off"]


def runtimes_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["functions"])
    Caller = Depends(principal)

    @router.get("/v1/runtimes/python", response_model=PythonRuntime)
    def python_runtime(caller: Principal = Caller) -> dict[str, Any]:
        return service.pickled.describe(caller.name)

    @router.put("/v1/runtimes/python", response_model=PythonRuntime)
    def set_policy(body: PolicyBody, caller: Principal = Caller) -> dict[str, Any]:
        require_admin(caller)
        service.pickled.set_policy(body.policy)
        return service.pickled.describe(caller.name)

    return router
