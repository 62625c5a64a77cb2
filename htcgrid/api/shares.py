"""Fair share between owners (``htcgrid.shares``): ``PUT /v1/users/{name}/share`` sets an
owner's weight and quota of running tasks, ``GET /v1/shares`` lists them (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, WithJsonSchema

from htcgrid.api.auth import NAME_IN_PATH, PrincipalDependency, require_admin
from htcgrid.auth.principals import Principal
from htcgrid.shares import KEEP, list_shares, set_share
from htcgrid.store import TaskStore
from htcgrid.store.share import MAX_SHARE


class ShareBody(BaseModel):
    # The bounds are documented here and checked by ``check_share``, whose words the API and
    # the in-process call share.
    model_config = ConfigDict(extra="forbid")
    share: StrictFloat | StrictInt | None = Field(
        None,
        description="Weight against other owners (default 1; absent: unchanged).",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": MAX_SHARE},
    )
    # JSON has no integer type of its own: 8.0 is 8 (``check_share`` refuses 8.5)
    max_running: Annotated[
        StrictInt | StrictFloat | None,
        WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}),
    ] = Field(
        None,
        description="Most tasks of this owner running at once (null: no quota; absent: unchanged).",
    )


class ShareAnswer(BaseModel):
    owner: str
    share: float
    max_running: int | None


class ShareList(BaseModel):
    shares: list[ShareAnswer]


def shares_router(store: TaskStore, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter(tags=["users"])
    Caller = Depends(principal)

    @router.put("/v1/users/{name}/share", response_model=ShareAnswer)
    def put_share(
        name: Annotated[str, NAME_IN_PATH], body: ShareBody, caller: Principal = Caller
    ) -> dict[str, Any]:
        """Set an owner's share of the grid's slots; every claimer follows within a second."""
        require_admin(caller)
        given = body.model_fields_set
        share = body.share if "share" in given and body.share is not None else KEEP
        quota = body.max_running if "max_running" in given else KEEP
        return set_share(store, name, share, quota).public(name.lower())

    @router.get("/v1/shares", response_model=ShareList)
    def shares(caller: Principal = Caller) -> dict[str, Any]:
        """Owners with a share or quota of their own (others have share 1, no quota)."""
        require_admin(caller)
        return {"shares": [s.public(o) for o, s in list_shares(store).items()]}

    return router
