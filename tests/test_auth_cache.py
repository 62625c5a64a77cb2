"""The Authenticator's short cache of verified credentials: a hit skips the records for at most
a second; a change made on this server empties it at once; a change made through another
server (a second Authenticator on the same data plane) takes effect within that second."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from backends import backend_url

from htcgrid.auth import principals
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import DataPlane, open_data_plane
from htcgrid.errors import AuthError
from htcgrid.settings import SecurityConfig

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def data(tmp_path: Path) -> Iterator[DataPlane]:
    with backend_url("file", tmp_path, "data") as url:
        plane = open_data_plane(url)
        yield plane
        plane.close()


class CountingReads:
    """Counts the records an Authenticator reads."""

    def __init__(self, auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = 0
        for name in ("get_user", "get_key"):
            real = getattr(auth.records, name)

            def counted(*args: object, _real: object = real) -> object:
                self.reads += 1
                return _real(*args)  # type: ignore[operator]

            monkeypatch.setattr(auth.records, name, counted)


def test_a_hit_reads_no_record_and_lasts_at_most_a_second(
    data: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    auth = Authenticator(data, clock=clock)
    auth.add_user("alice", PASSWORD)
    _, key = auth.create_key("alice")
    counter = CountingReads(auth, monkeypatch)
    assert auth.authenticate(api_key=key).name == "alice"
    assert counter.reads == 2  # the key's record and its user's
    clock.now += 0.9
    assert auth.authenticate(bearer=key).name == auth.authenticate(api_key=key).name == "alice"
    assert counter.reads == 4  # bearer and x-api-key are cached apart; the second was a hit
    clock.now += 0.2
    auth.authenticate(api_key=key)
    assert counter.reads == 6  # 1.1 s after it was verified: read again


def test_another_servers_change_takes_effect_within_the_second(data: DataPlane) -> None:
    clock = Clock()
    here = Authenticator(data, clock=clock)
    there = Authenticator(data, clock=clock)  # another server on the same grid
    here.add_user("alice", PASSWORD)
    record, key = here.create_key("alice")
    token = here.login("alice", PASSWORD).access_token
    assert here.authenticate(api_key=key).name == here.authenticate(bearer=token).name == "alice"
    there.revoke_key(record.key_id)
    there.set_password("alice", PASSWORD + "!")
    assert here.authenticate(api_key=key).name == "alice"  # cached, for under a second
    assert here.authenticate(bearer=token).name == "alice"
    clock.now += principals.CACHE_SECONDS
    with pytest.raises(AuthError, match="invalid API key"):
        here.authenticate(api_key=key)
    with pytest.raises(AuthError, match="revoked"):
        here.authenticate(bearer=token)


@pytest.mark.parametrize("change", ["revoke_key", "remove_user", "set_password", "set_role"])
def test_a_change_on_this_server_takes_effect_at_once(data: DataPlane, change: str) -> None:
    auth = Authenticator(data, clock=Clock())
    auth.add_user("alice", PASSWORD)
    record, key = auth.create_key("alice")
    token = auth.login("alice", PASSWORD).access_token
    assert auth.authenticate(bearer=token, api_key=key).role == "user"
    assert auth.authenticate(bearer=token).role == "user"
    if change == "revoke_key":
        auth.revoke_key(record.key_id)
    elif change == "remove_user":
        auth.remove_user("alice")
    elif change == "set_password":
        auth.set_password("alice", PASSWORD + "!")
    else:
        auth.set_role("alice", "admin")
    with pytest.raises(AuthError):
        auth.authenticate(bearer=token, api_key=key)
    with pytest.raises(AuthError):
        if change == "revoke_key":
            auth.authenticate(api_key=key)
        else:
            auth.authenticate(bearer=token)  # the generation moved on


def test_a_token_is_never_trusted_past_its_expiry(data: DataPlane) -> None:
    clock = Clock()
    auth = Authenticator(data, SecurityConfig(access_token_seconds=60), clock=clock)
    auth.add_user("alice", PASSWORD)
    token = auth.login("alice", PASSWORD).access_token
    clock.now += 59.5
    assert auth.authenticate(bearer=token).name == "alice"  # cached until the expiry only
    clock.now += 0.6
    with pytest.raises(AuthError):
        auth.authenticate(bearer=token)


def test_failures_are_not_cached_and_the_cache_is_bounded(
    data: DataPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(principals, "CACHE_SIZE", 2)
    auth = Authenticator(data, clock=Clock())
    auth.add_user("alice", PASSWORD)
    keys = [auth.create_key("alice")[1] for _ in range(3)]
    for key in keys:
        auth.authenticate(api_key=key)
    assert len(auth._verified) == 2
    counter = CountingReads(auth, monkeypatch)
    for _ in range(2):
        with pytest.raises(AuthError):
            auth.authenticate(api_key=keys[0][:-1] + "x")
    assert counter.reads == 2 and len(auth._verified) == 2
    assert Authenticator(data, cache_seconds=5).cache_seconds == principals.CACHE_SECONDS
