"""User and API key administration, through the API (``http(s)://``, as an admin) or straight
on a grid's data plane (any backend URL; whoever can open it needs no further credentials)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import quote

from htcgrid.auth import Authenticator
from htcgrid.dataplane import DataPlane, open_data_plane
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


class HTTPAdmin:
    def __init__(self, url: str, **connect_options: Any) -> None:
        from htcgrid.client import HTTPTransport
        from htcgrid.credentials import choose_auth

        auth = choose_auth(url, **connect_options)
        self.http = HTTPTransport(url, auth=auth)

    def add_user(self, name: str, password: str, role: str) -> dict[str, Any]:
        body = {"name": name, "password": password, "role": role}
        return self.http.call("POST", "/v1/users", json=body)  # type: ignore[no-any-return]

    def users(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/v1/users")["users"]  # type: ignore[no-any-return]

    def remove_user(self, name: str) -> None:
        self.http.call("DELETE", f"/v1/users/{quote(name, safe='')}")

    def set_password(self, name: str, password: str) -> dict[str, Any]:
        body = {"password": password}
        return self.http.call("PUT", f"/v1/users/{quote(name, safe='')}/password", json=body)  # type: ignore[no-any-return]

    def create_key(self, user: str | None, label: str) -> dict[str, Any]:
        body = {"user": user, "label": label}
        return self.http.call("POST", "/v1/keys", json=body)  # type: ignore[no-any-return]

    def api_keys(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/v1/keys")["keys"]  # type: ignore[no-any-return]

    def revoke_key(self, key_id: str) -> None:
        self.http.call("DELETE", f"/v1/keys/{quote(key_id, safe='')}")

    def close(self) -> None:
        self.http.close()


def open_admin(url: str, data_url: str | None = None, token: str | None = None) -> Admin:
    if url.startswith(("http://", "https://")):
        return HTTPAdmin(url, token=token)
    from htcgrid.backends import grid_data_url
    from htcgrid.client import default_data_url

    return DirectAdmin(open_data_plane(grid_data_url(url, data_url or default_data_url())))
