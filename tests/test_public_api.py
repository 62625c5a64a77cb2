"""What ``import htcgrid`` offers: the client and every error it can raise."""

from __future__ import annotations

import inspect

import httpx
import pytest

import htcgrid
import htcgrid.client.http
import htcgrid.errors


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
