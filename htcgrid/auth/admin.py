"""User and API key administration straight on a grid's data plane (any backend URL: whoever
can open it needs no further credentials); ``htcgrid.client.admin`` does the same through the
API, as an admin."""

from __future__ import annotations

from typing import Any, Protocol

from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import DataPlane
from htcgrid.errors import NotFound


class Admin(Protocol):
    def add_user(self, name: str, password: str, role: str) -> dict[str, Any]: ...
    def users(self) -> list[dict[str, Any]]: ...
    def remove_user(self, name: str) -> None: ...
    def set_password(self, name: str, password: str) -> dict[str, Any]: ...
    def create_key(self, user: str | None, label: str) -> dict[str, Any]: ...
    def api_keys(self) -> list[dict[str, Any]]: ...
    def revoke_key(self, key_id: str) -> None: ...
    def close(self) -> None: ...


class DirectAdmin:
    def __init__(self, data: DataPlane) -> None:
        self.data = data
        self.auth = Authenticator(data)

    def started(self) -> bool:
        """Whether a server has ever run on this data plane (it creates the signing secret)."""
        try:
            self.data.get("auth/secret")
        except NotFound:
            return False
        return True

    def add_user(self, name: str, password: str, role: str) -> dict[str, Any]:
        return self.auth.add_user(name, password, role).public()

    def users(self) -> list[dict[str, Any]]:
        return [u.public() for u in self.auth.users()]

    def remove_user(self, name: str) -> None:
        self.auth.remove_user(name)

    def set_password(self, name: str, password: str) -> dict[str, Any]:
        return self.auth.set_password(name, password).public()

    def create_key(self, user: str | None, label: str) -> dict[str, Any]:
        if not user:
            raise NotFound("on a backend URL, name the key's user with --user")
        record, secret = self.auth.create_key(user, label)
        return {**record.public(), "api_key": secret}

    def api_keys(self) -> list[dict[str, Any]]:
        return [k.public() for k in self.auth.api_keys()]

    def revoke_key(self, key_id: str) -> None:
        self.auth.revoke_key(key_id)

    def close(self) -> None:
        self.data.close()
