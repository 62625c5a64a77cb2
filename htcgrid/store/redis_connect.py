"""Connecting to Redis, shared by its task store and data plane: URL options, the eviction
check, and Redis errors turned into htcgrid's."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from htcgrid.errors import BackendUnavailable, ConfigurationError
from htcgrid.urls import redact

DEFAULT_PREFIX = "htcgrid:"
OUR_OPTIONS = frozenset({"prefix", "allow_eviction_check_failure"})
# htcgrid sets no TTL on any key, so a volatile-* policy can only evict other applications' keys.
SAFE_POLICIES = frozenset(
    {"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}
)
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})

Params = ParamSpec("Params")
R = TypeVar("R")
T = TypeVar("T")


# ---- connecting (shared with the Redis data plane) -----------------------------------------


def split_url(url: str) -> tuple[str, str, bool]:
    """``url`` → (the URL for redis-py, key prefix, allow_eviction_check_failure)."""
    parts = urlsplit(url)
    options = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in options if k in OUR_OPTIONS}
    rest = urlencode([(k, v) for k, v in options if k not in OUR_OPTIONS])
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    allow = ours.get("allow_eviction_check_failure", "").lower() in TRUE_WORDS
    return urlunsplit(parts._replace(query=rest)), prefix, allow


def connect(url: str) -> tuple[redis.Redis, str]:
    """A client for ``url`` whose server cannot evict our keys, and the key prefix.

    Raises ``BackendUnavailable`` if the server cannot be reached and ``ConfigurationError``
    if it could lose data by eviction or is older than 7.0.
    """
    client_url, prefix, allow_check_failure = split_url(url)
    client = redis.Redis.from_url(client_url)
    try:
        with unavailable_as_grid_error(url):
            check_eviction_policy(client, url, allow_check_failure)
    except BaseException:
        client.close()
        raise
    return client, prefix


def check_eviction_policy(client: redis.Redis, url: str, allow_check_failure: bool) -> None:
    """Refuse a server whose ``maxmemory-policy`` may evict keys without a TTL.

    The policy comes from ``CONFIG GET`` or, where a managed service disables CONFIG, from
    ``INFO memory``. If neither answers, only ``allow_eviction_check_failure=1`` lets us go on.
    """
    where = redact(url)
    policy, info = _read_policy(client)
    version = str(info.get("redis_version", "7"))
    if int(version.split(".")[0]) < 7:
        raise ConfigurationError(f"htcgrid needs Redis 7.0 or newer; {where} runs {version}")
    if policy is None:
        if allow_check_failure:
            return
        raise ConfigurationError(
            f"cannot read maxmemory-policy from {where} (CONFIG GET and INFO are both refused). "
            "An evicting policy would silently lose tasks and results. Make sure the server "
            "uses maxmemory-policy noeviction (or a volatile-* policy), then add "
            "allow_eviction_check_failure=1 to the URL's query to skip this check."
        )
    if policy not in SAFE_POLICIES:
        raise ConfigurationError(
            f"{where} uses maxmemory-policy {policy}, which can evict htcgrid's keys and "
            "silently lose tasks and results. Fix it on the server: "
            "`redis-cli CONFIG SET maxmemory-policy noeviction` (then `CONFIG REWRITE`, or put "
            "`maxmemory-policy noeviction` in redis.conf, so it survives a restart). htcgrid "
            "sets no TTLs, so volatile-lru, volatile-lfu, volatile-random and volatile-ttl "
            "are safe too."
        )


def _read_policy(client: redis.Redis) -> tuple[str | None, dict[str, Any]]:
    try:
        info: dict[str, Any] = client.info()
    except redis.ResponseError:
        info = {}
    try:
        answer = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        answer = {}
    raw = next(iter(answer.values()), None) or info.get("maxmemory_policy")
    policy = raw.decode() if isinstance(raw, bytes) else raw
    return (str(policy) if policy else None), info


@contextmanager
def unavailable_as_grid_error(url: str) -> Iterator[None]:
    """Turn redis-py's connection failures (and a full server) into ``BackendUnavailable``."""
    where = redact(url)
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConfigurationError(f"redis at {where} refused our credentials: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BackendUnavailable(f"redis at {where} is unavailable: {exc}") from exc
    except redis.ResponseError as exc:
        if not str(exc).startswith("OOM"):
            raise
        raise BackendUnavailable(f"redis at {where} is out of memory: {exc}") from exc


def translate_errors(method: Callable[Params, R]) -> Callable[Params, R]:
    """Wrap a method of an object with a ``url`` in ``unavailable_as_grid_error``."""

    @functools.wraps(method)
    def wrapper(*args: Params.args, **kwargs: Params.kwargs) -> R:
        with unavailable_as_grid_error(getattr(args[0], "url", "")):
            return method(*args, **kwargs)

    return wrapper


# ---- decoding ------------------------------------------------------------------------------
