"""``GET /v1/scaling``: the grid's scaling signal, for KEDA's ``metrics-api`` scaler.

The answer carries the number of agents ``htcgrid.scaling.desired_capacity`` asks for, the
queue depth (in all and per function) and the running tasks. The policy comes with the
query (``?min_agents=1&max_agents=100&target_backlog=2&slots_per_agent=1``), so the
``ScaledObject`` that polls it states every number in one place and the server needs no
scaling settings. The endpoint keeps no state: the cool-down against flapping is the
orchestrator's (the HPA's scale-down stabilisation window). Any signed-in caller may read it.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from htcgrid.api.auth import PrincipalDependency
from htcgrid.auth.principals import Principal
from htcgrid.models import DEFAULT_FUNCTION
from htcgrid.scaling import (
    DEFAULT_TARGET_BACKLOG,
    ScalingPolicy,
    desired_capacity,
    running_tasks,
)
from htcgrid.service import GridService


class ScalingPolicyAnswer(BaseModel):
    min_agents: int
    max_agents: int
    target_backlog: float
    slots_per_agent: int


class ScalingAnswer(BaseModel):
    desired_agents: int = Field(description="Agents to run now: point KEDA's valueLocation here.")
    queue_depth: int = Field(description="Pending tasks, all functions.")
    running: int = Field(description="Tasks being processed now.")
    functions: dict[str, int] = Field(description="Pending tasks per function.")
    policy: ScalingPolicyAnswer


def queue_depths(service: GridService) -> dict[str, int]:
    """Pending tasks of the default function and of each deployed one (zeros left out)."""
    names = [DEFAULT_FUNCTION, *service.functions.names()]
    found = {name: service.store.queue_depth([name]) for name in dict.fromkeys(names)}
    return {name: depth for name, depth in found.items() if depth}


def scaling_router(service: GridService, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["ops"])
    Caller = Depends(principal)

    @router.get("/v1/scaling", response_model=ScalingAnswer)
    def scaling(
        min_agents: int = Query(1, ge=0, le=100_000, description="above max_agents: max_agents"),
        max_agents: int = Query(100, ge=1, le=100_000),
        target_backlog: float = Query(DEFAULT_TARGET_BACKLOG, gt=0, le=1_000_000),
        slots_per_agent: int = Query(1, ge=1, le=1024),
        caller: Principal = Caller,
    ) -> dict[str, Any]:
        """How many agents the grid needs now: ceil(queue depth / (target_backlog x
        slots_per_agent)), never below the agents the running tasks occupy, within
        min_agents..max_agents."""
        min_agents = min(min_agents, max_agents)  # as KEDA reads minReplicaCount
        policy = ScalingPolicy(min_agents, max_agents, target_backlog, slots_per_agent, 0.0)
        depth = service.store.queue_depth()
        running = running_tasks(service.store)
        desired = desired_capacity(policy, depth, running, 0, math.inf)
        return {
            "desired_agents": desired,
            "queue_depth": depth,
            "running": running,
            "functions": queue_depths(service),
            "policy": {
                "min_agents": min_agents,
                "max_agents": max_agents,
                "target_backlog": target_backlog,
                "slots_per_agent": slots_per_agent,
            },
        }

    return router
