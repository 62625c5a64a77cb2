"""User and API key administration through the API (``http(s)://``), as an admin; the same
calls as ``htcgrid.auth.admin.Admin``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from htcgrid.client.auth import choose_auth
from htcgrid.client.http import HTTPTransport


class HTTPAdmin:
    def __init__(self, url: str, **connect_options: Any) -> None:
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

    def set_share(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes``: ``share`` and/or ``max_running`` (None: no quota); others kept."""
        path = f"/v1/users/{quote(name, safe='')}/share"
        return self.http.call("PUT", path, json=changes)  # type: ignore[no-any-return]

    def shares(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/v1/shares")["shares"]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()
