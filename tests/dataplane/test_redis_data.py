"""What only the Redis data plane promises: blobs under ``<prefix>data:``, and a
``delete_prefix`` that treats glob characters in names as plain characters."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator

import pytest
from backends import REDIS_URL, require_service

if importlib.util.find_spec("redis") is None:
    if os.environ.get("CI"):
        raise ImportError("redis is not importable in CI")
    pytest.skip("redis is not installed", allow_module_level=True)

import redis

from htcgrid.dataplane.redis import RedisDataPlane, escape_glob
from htcgrid.errors import NotFound


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    require_service(REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(raw: redis.Redis) -> Iterator[str]:
    """A fresh key prefix with glob characters in it; its keys are deleted afterwards."""
    tag = f"htcgrid-test-{uuid.uuid4().hex[:10]}"
    yield f"{tag}[*?]:"
    doomed = list(raw.scan_iter(match=tag + "*", count=1000))
    if doomed:
        raw.unlink(*doomed)


def _url(prefix: str) -> str:
    return f"{REDIS_URL}?prefix={prefix}"


def test_blobs_live_under_the_data_namespace(raw: redis.Redis, prefix: str) -> None:
    data = RedisDataPlane(_url(prefix))
    data.put("sessions/s1/s1_0/input", b"payload")
    assert raw.get(f"{prefix}data:sessions/s1/s1_0/input") == b"payload"
    assert data.get("sessions/s1/s1_0/input") == b"payload"
    data.close()


def test_glob_characters_in_a_prefix_are_literal(prefix: str) -> None:
    data = RedisDataPlane(_url(prefix))
    for key in ("a*/1", "a*/2", "ab/1", "a?/1", "a[b]/1", "ab]/1", "b/1"):
        data.put(key, b"x")
    assert data.delete_prefix("a*/") == 2
    assert data.delete_prefix("a[b]/") == 1
    assert data.delete_prefix("a?") == 1
    assert [data.get(k) for k in ("ab/1", "ab]/1", "b/1")] == [b"x"] * 3
    with pytest.raises(NotFound):
        data.get("a*/1")
    data.close()


def test_glob_characters_in_the_url_prefix_stay_in_their_namespace(
    raw: redis.Redis, prefix: str
) -> None:
    ours = RedisDataPlane(_url(prefix))
    # Without escaping, "<tag>[*?]:" would match "<tag>*:" (a one-character class).
    neighbour = prefix.replace("[*?]", "*")
    theirs = RedisDataPlane(_url(neighbour))
    ours.put("sessions/s1/s1_0/input", b"ours")
    theirs.put("sessions/s1/s1_0/input", b"theirs")
    assert ours.delete_prefix("sessions/s1/") == 1
    assert theirs.get("sessions/s1/s1_0/input") == b"theirs"
    ours.close()
    theirs.close()


def test_delete_prefix_counts_across_batches(prefix: str) -> None:
    data = RedisDataPlane(_url(prefix))
    pipe = data._client.pipeline(transaction=False)
    for i in range(1234):
        pipe.set(f"{data.namespace}sessions/big/big_{i}/input", b"x")
    pipe.execute()
    data.put("sessions/bigger/bigger_0/input", b"x")
    assert data.delete_prefix("sessions/big/") == 1234
    assert data.delete_prefix("sessions/big/") == 0
    assert data.get("sessions/bigger/bigger_0/input") == b"x"
    data.close()


def test_escape_glob() -> None:
    assert escape_glob("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert escape_glob("plain:sessions/s1/") == "plain:sessions/s1/"
