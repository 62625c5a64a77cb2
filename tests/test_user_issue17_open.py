"""Issue 17 as a new user met it: what the first run-through found open, each now fixed and
kept as a test of the class of input it found:

- ``Executor.map`` with a future among its arguments fails deep in pickling
  (``TypeError: cannot pickle '_thread.RLock' object``) instead of running or saying that
  ``map`` takes no futures (``htcgrid/client/executor.py``).
- ``PUT /v1/users/{name}/share`` with a JSON body but no ``Content-Type`` (curl's default)
  answers 400 "body: Input should be a valid dictionary or object to extract fields from",
  which does not tell the user what to change (the API's request-error handler).
- ``POST /v1/sessions/{id}/cancel`` with ``{"tasks": [1.5]}`` answers pydantic's words
  ("tasks.0.str: Input should be a valid string; tasks.0.int: …") where the same call in
  process says "1.5 is not a task of session …" (``htcgrid/api/schemas.py``).
- Common data sent before a session (``PUT /v1/sessions/{id}/common``) is kept under the
  session id alone: another user may plant it under an id you submit later (your tasks then
  read theirs as ``context.common``), or submit under the id you sent yours to and read it
  (``Uploads.put_common`` takes the owner but records none; the submit does not check it).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import cloudpickle
import httpx
import pytest
from grid_process import GridProcess, htcgrid_up

import htcgrid
from htcgrid.client.admin import HTTPAdmin
from htcgrid.errors import GridError, ValidationError

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a user's own script travels


def double(x: int) -> int:
    return 2 * x


def add(a: int, b: int) -> int:
    return a + b


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("grid")) as grid:  # --no-auth: the caller is admin
        yield grid
        assert grid.stop() == 0


def test_map_over_futures_runs_with_their_values(up: GridProcess) -> None:
    with htcgrid.Executor(up.url) as ex:
        two, four = ex.submit(double, 1), ex.submit(double, 2)
        assert list(ex.map(add, [two, two], [1, 2])) == [3, 4]
        assert list(ex.map(add, [two, four, 5], [four, 1, two], chunksize=2)) == [6, 5, 7]


def test_a_share_sent_without_content_type_is_taken_or_named(up: GridProcess) -> None:
    answer = httpx.put(f"{up.url}/v1/users/alice/share", content=b'{"share": 3}')
    assert answer.status_code == 200 or "content-type" in answer.text.lower(), answer.text


def test_a_cancel_naming_a_float_gets_the_in_process_words(up: GridProcess) -> None:
    grid = htcgrid.connect(up.url)
    session = grid.submit([{"i": i} for i in range(2)])
    with pytest.raises(ValidationError) as caught:
        session.cancel(tasks=[1.5])  # type: ignore[list-item]
    grid.close()
    assert "1.5 is not a task of session" in str(caught.value)


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A grid with authentication, its URL, the admin's API key and alice's token."""
    with htcgrid_up(tmp_path_factory.mktemp("authgrid"), auth=True) as grid:
        key = grid.credentials["api_key"]
        HTTPAdmin(grid.url, api_key=key).add_user("alice", "alice's long password", "user")
        token = httpx.post(
            f"{grid.url}/v1/auth/token",
            json={"username": "alice", "password": "alice's long password"},
        ).json()["access_token"]
        yield grid.url, key, token
        assert grid.stop() == 0


def test_common_data_planted_by_another_user_never_reaches_my_session(
    two_users: tuple[str, str, str],
) -> None:
    url, key, alice = two_users
    planted = httpx.put(
        f"{url}/v1/sessions/nightly-prices/common",
        headers={"authorization": f"Bearer {alice}", "content-type": "application/json"},
        content=b'{"planted": "by alice"}',
    )
    if planted.status_code != 200:
        return  # refused: an id nobody holds yet is not alice's to fill
    grid = htcgrid.connect(url, api_key=key)
    try:
        session = grid.submit([{"a": 1}], session_id="nightly-prices")
    except GridError:  # refused: the id is taken, which tells the admin
        return
    finally:
        grid.close()
    pytest.fail(f"alice's common data ({planted.status_code}) became the admin's {session.id}")


def test_my_common_data_never_reaches_a_session_another_user_submits(
    two_users: tuple[str, str, str],
) -> None:
    url, key, alice = two_users
    admin = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    put = httpx.put(f"{url}/v1/sessions/admin-secret/common", headers=admin, content=b'{"s": 1}')
    assert put.status_code == 200, put.text
    submitted = httpx.post(
        f"{url}/v1/sessions",
        headers={"authorization": f"Bearer {alice}"},
        json={"session_id": "admin-secret", "tasks": [{"a": 1}]},
    )
    assert submitted.status_code == 409, submitted.text
    assert "session id admin-secret is already in use" in submitted.text
