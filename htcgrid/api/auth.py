"""The API's side of authentication: the ``principal`` dependency every route takes, and the
``/v1/auth``, ``/v1/users`` and ``/v1/keys`` routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from htcgrid.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from htcgrid.auth.principals import OPEN, Authenticator, Principal
from htcgrid.auth.records import KEY_ID_PATTERN
from htcgrid.errors import Forbidden
from htcgrid.models import NAME_PATTERN

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token from POST /v1/auth/token (or an API key).",
)
api_key_scheme = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="An API key from `htcgrid key create` (HTC-Grid's private API key).",
)

USER_NAMES = "1-64 lower-case letters, digits, '.', '_' or '-'; upper case is folded"
NAME_IN_PATH = Path(pattern=NAME_PATTERN.pattern, description=USER_NAMES)
KEY_ID_IN_PATH = Path(pattern=KEY_ID_PATTERN.pattern)
PrincipalDependency = Callable[..., Principal]
BEARER = Security(bearer_scheme)
API_KEY = Security(api_key_scheme)


def principal_dependency(auth: Authenticator | None) -> PrincipalDependency:
    """The caller of a request; with ``auth`` None (``--no-auth``) everyone is an admin."""

    def principal(
        credentials: HTTPAuthorizationCredentials | None = BEARER,
        api_key: str | None = API_KEY,
    ) -> Principal:
        if auth is None:
            return OPEN
        return auth.authenticate(credentials.credentials if credentials else None, api_key)

    return principal


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
    return principal


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: StrictStr = Field(max_length=256)
    password: StrictStr = Field(max_length=4096)


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: StrictStr = Field(max_length=4096)


class TokenAnswer(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: float
    refresh_expires_in: float
    user: str
    role: str


class WhoAmI(BaseModel):
    user: str
    role: str
    via: str


UserName = Annotated[StrictStr, Field(pattern=NAME_PATTERN.pattern, description=USER_NAMES)]
Password = Annotated[
    StrictStr, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
]


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: UserName
    password: Password
    role: Literal["admin", "deployer", "user"] = "user"


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: Password


class UserAnswer(BaseModel):
    name: str
    role: str
    created_at: float


class UserList(BaseModel):
    users: list[UserAnswer]


class NewKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: UserName | None = Field(None, description="default: the caller")
    label: StrictStr = Field("", max_length=200)


class KeyAnswer(BaseModel):
    key_id: str
    user: str
    label: str
    created_at: float


class NewKeyAnswer(KeyAnswer):
    api_key: str = Field(description="The secret; shown this once, never again.")


class KeyList(BaseModel):
    keys: list[KeyAnswer]


def _client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def auth_router(auth: Authenticator, principal: PrincipalDependency) -> APIRouter:
    router = APIRouter()
    Caller = Depends(principal)

    @router.post("/v1/auth/token", response_model=TokenAnswer, tags=["auth"])
    def token(body: LoginBody, request: Request) -> dict[str, Any]:
        """Trade a user name and password for an access token and a refresh token."""
        pair = auth.login(body.username, body.password, _client_address(request))
        return pair.as_dict()

    @router.post("/v1/auth/refresh", response_model=TokenAnswer, tags=["auth"])
    def refresh(body: RefreshBody) -> dict[str, Any]:
        """A fresh access token for a refresh token."""
        return auth.refresh(body.refresh_token).as_dict()

    @router.get("/v1/auth/whoami", response_model=WhoAmI, tags=["auth"])
    def whoami(caller: Principal = Caller) -> dict[str, Any]:
        return {"user": caller.name, "role": caller.role, "via": caller.via}

    @router.get("/v1/users", response_model=UserList, tags=["users"])
    def users(caller: Principal = Caller) -> dict[str, Any]:
        require_admin(caller)
        return {"users": [u.public() for u in auth.users()]}

    @router.post("/v1/users", response_model=UserAnswer, status_code=201, tags=["users"])
    def add_user(body: NewUserBody, caller: Principal = Caller) -> dict[str, Any]:
        require_admin(caller)
        return auth.add_user(body.name, body.password, body.role).public()

    @router.delete("/v1/users/{name}", status_code=204, tags=["users"])
    def remove_user(name: Annotated[str, NAME_IN_PATH], caller: Principal = Caller) -> None:
        require_admin(caller)
        auth.remove_user(name)

    @router.put("/v1/users/{name}/password", response_model=UserAnswer, tags=["users"])
    def set_password(
        name: Annotated[str, NAME_IN_PATH], body: PasswordBody, caller: Principal = Caller
    ) -> dict[str, Any]:
        """Admins set anyone's password; a user sets their own. Older tokens stop working."""
        if caller.name != name.lower():
            require_admin(caller)
        return auth.set_password(name, body.password).public()

    @router.get("/v1/keys", response_model=KeyList, tags=["keys"])
    def keys(caller: Principal = Caller) -> dict[str, Any]:
        require_admin(caller)
        return {"keys": [k.public() for k in auth.api_keys(None)]}

    @router.post("/v1/keys", response_model=NewKeyAnswer, status_code=201, tags=["keys"])
    def create_key(body: NewKeyBody, caller: Principal = Caller) -> dict[str, Any]:
        require_admin(caller)
        record, secret = auth.create_key(body.user or caller.name, body.label)
        return {**record.public(), "api_key": secret}

    @router.delete("/v1/keys/{key_id}", status_code=204, tags=["keys"])
    def revoke_key(key_id: Annotated[str, KEY_ID_IN_PATH], caller: Principal = Caller) -> None:
        require_admin(caller)
        auth.revoke_key(key_id)

    return router
