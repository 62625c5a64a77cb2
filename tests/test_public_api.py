"""What ``import htcgrid`` offers: the client and every error it can raise."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import httpx
import pytest

import htcgrid
import htcgrid.client.http
import htcgrid.errors

PUBLIC = [
    "AuthError",
    "BackendUnavailable",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Executor",
    "Forbidden",
    "GridError",
    "NoAgentWarning",
    "NotFound",
    "PackageCorrupt",
    "PayloadTooLarge",
    "RemoteError",
    "ResourceMissing",
    "RuntimeMismatch",
    "Session",
    "StorageFull",
    "TaskFailed",
    "TaskResult",
    "TaskState",
    "TokenExpired",
    "TooManyAttempts",
    "TooManyRequests",
    "UnknownFunction",
    "ValidationError",
    "__version__",
    "connect",
]


def test_the_public_api_is_what_it_was() -> None:
    """Adding a name is a decision: add it here too. Removing one breaks users."""
    assert htcgrid.__all__ == PUBLIC


def every_module() -> list[str]:
    """Every module of the package that imports here (an extra not installed skips one)."""
    names = []
    for info in pkgutil.walk_packages(htcgrid.__path__, "htcgrid."):
        if info.name.endswith("__main__") or ".shim" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue
        names.append(info.name)
    return names


def grid_errors() -> set[type[htcgrid.GridError]]:
    every_module()
    found: set[type[htcgrid.GridError]] = set()
    todo = [htcgrid.GridError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_grid_error_lives_in_errors_py_with_a_docstring_saying_when() -> None:
    for cls in grid_errors():
        if cls.__module__.startswith("htcgrid."):
            assert cls.__module__ == "htcgrid.errors", f"{cls.__name__} is in {cls.__module__}"
            doc = cls.__dict__.get("__doc__") or ""
            assert doc.strip(), f"{cls.__name__} needs a docstring saying when it is raised"
            assert cls.__name__ in htcgrid.__all__, f"{cls.__name__} is not exported"


def test_every_error_of_the_tree_is_exported_from_htcgrid() -> None:
    errors = {
        name
        for name, value in vars(htcgrid.errors).items()
        if inspect.isclass(value) and issubclass(value, htcgrid.errors.GridError)
    }
    assert errors <= set(htcgrid.__all__)
    for name in errors:
        assert getattr(htcgrid, name) is getattr(htcgrid.errors, name)


def test_every_error_the_client_module_names_is_in_the_tree() -> None:
    raised = {
        name
        for name, value in vars(htcgrid.client.session).items()
        if inspect.isclass(value) and issubclass(value, Exception)
    }
    assert raised <= set(htcgrid.__all__), raised - set(htcgrid.__all__)


def test_all_lists_only_what_exists() -> None:
    assert sorted(htcgrid.__all__) == htcgrid.__all__
    for name in htcgrid.__all__:
        assert hasattr(htcgrid, name), name
    assert htcgrid.client.TaskFailed is htcgrid.TaskFailed
    assert htcgrid.NoAgentWarning is htcgrid.errors.NoAgentWarning
    assert issubclass(htcgrid.TaskFailed, htcgrid.GridError)
    assert issubclass(htcgrid.BackendUnavailable, htcgrid.GridError)


@pytest.mark.parametrize(
    "status, family",
    [
        (400, htcgrid.ValidationError),
        (404, htcgrid.NotFound),
        (409, htcgrid.Conflict),
        (503, htcgrid.BackendUnavailable),
        (418, htcgrid.RemoteError),
    ],
)
def test_an_error_code_the_client_does_not_know_keeps_its_family(
    status: int, family: type[htcgrid.GridError]
) -> None:
    body = {"error": {"code": "something_new", "message": "what went wrong"}}
    with pytest.raises(family, match="what went wrong"):
        htcgrid.client.http._raise_for(httpx.Response(status, json=body), body)
