"""Deploying and managing functions through the API (``http(s)://``, as an admin or deployer)
or straight on a grid's backends (any task store URL: its recorded data plane is used)."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol
from urllib.parse import quote

from htcgrid.functions import FunctionRegistry


class FunctionAdmin(Protocol):
    def deploy(
        self,
        name: str,
        package: bytes,
        handler: str,
        runtime: str,
        timeout_seconds: float | None,
        memory_mb: int,
    ) -> dict[str, Any]: ...
    def functions(self) -> list[dict[str, Any]]: ...
    def show(self, name: str) -> dict[str, Any]: ...
    def rollback(self, name: str, version: int) -> dict[str, Any]: ...
    def delete(self, name: str) -> None: ...
    def close(self) -> None: ...


class DirectFunctions:
    def __init__(self, registry: FunctionRegistry) -> None:
        self.registry = registry

    def deploy(
        self,
        name: str,
        package: bytes,
        handler: str,
        runtime: str,
        timeout_seconds: float | None,
        memory_mb: int,
    ) -> dict[str, Any]:
        deployed = self.registry.deploy(name, package, handler, runtime, timeout_seconds, memory_mb)
        return deployed.as_dict()

    def functions(self) -> list[dict[str, Any]]:
        return [self.registry.record(name).as_dict() for name in self.registry.names()]

    def show(self, name: str) -> dict[str, Any]:
        return self.registry.record(name).as_dict()

    def rollback(self, name: str, version: int) -> dict[str, Any]:
        return self.registry.rollback(name, version).as_dict()

    def delete(self, name: str) -> None:
        self.registry.delete(name)

    def close(self) -> None:
        self.registry.data.close()


class HTTPFunctions:
    def __init__(self, url: str, **connect_options: Any) -> None:
        from htcgrid.client.auth import choose_auth
        from htcgrid.client.http import HTTPTransport

        self.http = HTTPTransport(url, auth=choose_auth(url, **connect_options))

    def deploy(
        self,
        name: str,
        package: bytes,
        handler: str,
        runtime: str,
        timeout_seconds: float | None,
        memory_mb: int,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {
            "handler": handler,
            "runtime": runtime,
            "memory_mb": memory_mb,
            "sha256": hashlib.sha256(package).hexdigest(),
        }
        if timeout_seconds is not None:
            options["timeout_seconds"] = timeout_seconds
        return self.http.call(  # type: ignore[no-any-return]
            "POST",
            _path(name),
            params=options,
            content=package,
            headers={"Content-Type": "application/zip"},
        )

    def functions(self) -> list[dict[str, Any]]:
        return self.http.call("GET", "/v1/functions")["functions"]  # type: ignore[no-any-return]

    def show(self, name: str) -> dict[str, Any]:
        return self.http.call("GET", _path(name))  # type: ignore[no-any-return]

    def rollback(self, name: str, version: int) -> dict[str, Any]:
        body = {"version": version}
        return self.http.call("POST", _path(name) + "/rollback", json=body)  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        self.http.call("DELETE", _path(name))

    def close(self) -> None:
        self.http.close()


def _path(name: str) -> str:
    return f"/v1/functions/{quote(name, safe='')}"


def open_functions(
    url: str, data_url: str | None = None, token: str | None = None
) -> FunctionAdmin:
    """Function management for ``url``: the API for ``http(s)://``, else the grid's backends
    (which must exist: deploying into a grid nobody runs is a mistake, not a new grid)."""
    if url.startswith(("http://", "https://")):
        return HTTPFunctions(url, token=token)
    from htcgrid.backends import grid_data_url
    from htcgrid.dataplane import open_data_plane

    return DirectFunctions(
        FunctionRegistry(open_data_plane(grid_data_url(url, data_url, create=False)))
    )
