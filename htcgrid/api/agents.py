"""``GET /v1/agents``: the agents that serve this grid, as they announce themselves
(``htcgrid.presence``). Admins only: it names hosts and process ids."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from htcgrid.api.auth import PrincipalDependency, require_admin
from htcgrid.auth.principals import Principal
from htcgrid.presence import list_agents
from htcgrid.store import TaskStore


class AgentAnswer(BaseModel):
    agent_id: str
    host: str
    pid: int
    slots: int
    functions: list[str] | None = None
    version: str
    started_at: float
    last_seen: float
    runtimes: dict[str, str] = {}  # versions of what pickled Python calls need (htcgrid.pickled)


class AgentList(BaseModel):
    agents: list[AgentAnswer]


def agents_router(
    store: TaskStore, principal: PrincipalDependency, clock: Callable[[], float] = time.time
) -> APIRouter:
    router = APIRouter(tags=["agents"])
    Caller = Depends(principal)

    @router.get("/v1/agents", response_model=AgentList)
    def agents(caller: Principal = Caller) -> dict[str, Any]:
        """Agents seen in the last day, most recently seen first."""
        require_admin(caller)
        return {"agents": [a.as_dict() for a in list_agents(store, clock())]}

    return router
