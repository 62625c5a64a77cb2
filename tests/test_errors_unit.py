"""The exception tree end to end: each error the server raises on purpose leaves the API with
its own status and code, and the HTTP client raises the same class again, so a caller catches
one class whether it talks to a grid in process or over HTTP."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import htcgrid
import htcgrid.errors as errors
from htcgrid.api import create_app
from htcgrid.client.http import HTTPTransport
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import (
    BY_CODE,
    BY_STATUS,
    GridError,
    RemoteError,
    TaskFailed,
    TooManyAttempts,
    TooManyRequests,
)
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, GridError) and cls.__module__ == errors.__name__
]
RAISED: list[Any] = []  # what the route below raises next


@pytest.fixture(scope="module")
def api() -> Iterator[HTTPTransport]:
    """The API with one more route, which raises whatever the test puts in ``RAISED``, read
    through the client's own HTTP transport."""
    service = GridService(open_store("memory://"), open_data_plane("memory://"))
    app = create_app(service)

    def boom() -> None:
        raise RAISED.pop()

    app.add_api_route("/v1/boom", boom, methods=["POST"])
    transport = HTTPTransport("http://testserver", retry_seconds=0)
    with TestClient(app, raise_server_exceptions=False) as http:
        transport.http = http
        yield transport


def made(cls: type[GridError]) -> GridError:
    if issubclass(cls, TooManyRequests):
        return cls("slow down", 2.2)
    return cls(f"a {cls.__name__} on purpose")


def test_every_error_says_when_it_is_raised_and_is_exported() -> None:
    for cls in CLASSES:
        assert cls.__doc__ and cls.__doc__.strip(), f"{cls.__name__} has no docstring"
        assert cls.__name__ in htcgrid.__all__, f"{cls.__name__} is not exported"
        assert getattr(htcgrid, cls.__name__) is cls


def test_each_code_names_one_class_and_each_status_is_an_error() -> None:
    own = [cls for cls in CLASSES if "code" in vars(cls)]
    codes = [cls.code for cls in own]
    assert len(codes) == len(set(codes)), codes
    assert all(400 <= cls.status <= 599 for cls in CLASSES)
    for code, cls in BY_CODE.items():
        assert cls.code == code
    for status, cls in BY_STATUS.items():
        assert cls.status == status


@pytest.mark.parametrize("cls", sorted(BY_CODE.values(), key=lambda c: c.__name__), ids=str)
def test_an_error_raised_by_the_server_is_raised_again_by_the_client(
    api: HTTPTransport, cls: type[GridError]
) -> None:
    RAISED.append(made(cls))
    with pytest.raises(GridError) as caught:
        api.call("POST", "/v1/boom")
    assert type(caught.value) is cls
    assert str(caught.value) == str(made(cls))


def test_a_rate_limit_keeps_its_pause_rounded_up_and_a_lockout_its_class(
    api: HTTPTransport,
) -> None:
    for cls in (TooManyRequests, TooManyAttempts):
        RAISED.append(cls("slow down", 2.2))
        with pytest.raises(TooManyRequests) as caught:
            api.call("POST", "/v1/boom")
        assert type(caught.value) is cls and caught.value.retry_after_seconds == 3


def test_a_401_asks_for_a_bearer_token(api: HTTPTransport) -> None:
    RAISED.append(errors.AuthError("who are you"))
    answer = api.http.post("/v1/boom")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {"error": {"code": "unauthorized", "message": "who are you"}}


def test_an_unexpected_exception_is_a_500_that_names_only_its_type(api: HTTPTransport) -> None:
    RAISED.append(KeyError("secret detail"))
    answer = api.http.post("/v1/boom")
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal", "message": "internal error: KeyError"}}
    RAISED.append(KeyError("secret detail"))
    with pytest.raises(RemoteError) as caught:
        api.call("POST", "/v1/boom")
    assert (caught.value.status, caught.value.code) == (500, "internal")


@pytest.mark.parametrize(
    ("status", "family"),
    [(400, errors.ValidationError), (403, errors.Forbidden), (507, errors.StorageFull)],
)
def test_a_code_this_client_does_not_know_falls_back_to_its_status_family(
    status: int, family: type[GridError]
) -> None:
    body = {"error": {"code": "something_newer", "message": "from a newer server"}}

    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    transport = HTTPTransport("http://grid.test", retry_seconds=0)
    transport.http = httpx.Client(base_url="http://grid.test", transport=httpx.MockTransport(reply))
    with pytest.raises(family, match="from a newer server"):
        transport.call("GET", "/v1/sessions")


def test_task_failed_names_how_many_and_the_first() -> None:
    failure = htcgrid.TaskResult("s_3", 3, TaskState.FAILED, None, {"message": "boom"}, 1)
    cancelled = htcgrid.TaskResult("s_4", 4, TaskState.CANCELLED, None, None, 0)
    raised = TaskFailed([failure, cancelled])
    assert str(raised) == "2 task(s) did not finish; s_3: boom"
    assert raised.failures == [failure, cancelled]
    assert str(TaskFailed([cancelled])) == "1 task(s) did not finish; s_4: cancelled"
