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
    def set_share(self, name: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    def shares(self) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class DirectAdmin:
    """``store_url``: the grid's task store, where fair-share records live (opened when a
    share is first read or set)."""

    def __init__(self, data: DataPlane, store_url: str | None = None) -> None:
        self.data = data
        self.auth = Authenticator(data)
        self.store_url = store_url
        self._store: Any = None

    def _task_store(self) -> Any:
        if self._store is None:
            from htcgrid.store import open_store

            if self.store_url is None:
                raise NotFound("shares live in the task store: give the grid's --url")
            self._store = open_store(self.store_url, create=False)
        return self._store

    def set_share(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes``: ``share`` and/or ``max_running`` (None: no quota); others kept."""
        from htcgrid.shares import set_share

        return set_share(self._task_store(), name, **changes).public(name.lower())

    def shares(self) -> list[dict[str, Any]]:
        from htcgrid.shares import list_shares

        return [s.public(o) for o, s in list_shares(self._task_store()).items()]

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
        if self._store is not None:
            self._store.close()
        self.data.close()
