"""Backend URLs for the contract suites, each isolated per test and cleaned up afterwards.

PostgreSQL and Redis come from ``HTCGRID_TEST_POSTGRES_URL`` / ``HTCGRID_TEST_REDIS_URL``
(defaulting to the loopback servers). A missing server skips the test locally and fails it
when ``CI`` is set, so CI can never pass by skipping.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

POSTGRES_URL = os.environ.get(
    "HTCGRID_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("HTCGRID_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

STORE_KINDS = ["memory", "sqlite", "postgresql", "redis", "aws"]
DATA_KINDS = ["memory", "file", "sqlite", "postgresql", "redis", "s3"]
SHARED_KINDS = {
    "sqlite",
    "file",
    "postgresql",
    "redis",
    "aws",
    "s3",
}  # reachable from other processes


def require_service(url: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1).close()
    except OSError:
        message = f"service not reachable at {parts.hostname}:{parts.port}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run every backend)")
        pytest.skip(message)


def require_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not importable in CI: {exc}")
        pytest.skip(f"{name} not available: {exc}")


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


@contextmanager
def backend_url(kind: str, tmp_path: Path, role: str = "store") -> Iterator[str]:
    tag = uuid.uuid4().hex[:10]
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite://{tmp_path / 'grid.db'}"
    elif kind == "file":
        yield f"file://{tmp_path / 'blobs'}"
    elif kind == "postgresql":
        require_service(POSTGRES_URL)
        require_module(f"htcgrid.{'store' if role == 'store' else 'dataplane'}.postgres")
        schema = f"htcgrid_test_{tag}"
        yield _with_query(POSTGRES_URL, schema=schema)
        drop_postgres_schema(schema)
    elif kind == "redis":
        require_service(REDIS_URL)
        require_module(f"htcgrid.{'store' if role == 'store' else 'dataplane'}.redis")
        prefix = f"htcgrid-test-{tag}:"
        yield _with_query(REDIS_URL, prefix=prefix)
        delete_redis_prefix(prefix)
    elif kind == "aws":
        with aws_grid(f"t{tag}") as url:
            yield url
    elif kind == "s3":
        with s3_bucket(f"htcgrid-test-{tag}") as url:
            yield url
    else:
        raise ValueError(kind)


def drop_postgres_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def delete_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


# ---- AWS: moto's server on loopback (real HTTP, real boto3 clients) ---------------------------

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
AWS_REGION = "us-east-1"
_MOTO: dict[str, Any] = {}


def moto_endpoint() -> str:
    """The endpoint of moto's server, started on a free loopback port on first use and
    stopped when the test process exits (one server per pytest process)."""
    require_module("boto3")
    require_module("moto.server")
    if "endpoint" not in _MOTO:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _quicker_moto_sqs_clock()
        _moto_transactions_copy_each_table_once()
        _moto_dynamodb_and_s3_one_request_at_a_time()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        _MOTO.update(server=server, endpoint=f"http://{host}:{port}")
        atexit.register(server.stop)
    return str(_MOTO["endpoint"])


def _quicker_moto_sqs_clock() -> None:
    """moto's SQS model re-reads the clock for every message of a queue on every call, through
    datetime conversions that cost microseconds each: a 3000-message queue takes minutes to
    fill. The server runs in this process, so its SQS module gets the same clock read
    directly (``time.time``); the values are the same, only faster. Our code is untouched."""
    import time

    import moto.sqs.models as sqs_models

    slow, slow_millis = sqs_models.unix_time, sqs_models.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(slow_millis(dt))

    sqs_models.unix_time = unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[assignment]


def _moto_transactions_copy_each_table_once() -> None:
    """moto backs up a table before a DynamoDB transaction (to roll back on a failed
    condition) once per *item* of the transaction: 100 copies of the whole table for one
    100-item transaction. Within one transaction every copy of a table is the same snapshot,
    so this keeps the first and hands it out again; rollback restores the same state."""
    import copy
    import threading

    import moto.dynamodb.models as models

    local = threading.local()

    class CopyOncePerTransaction:
        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            cache = getattr(local, "cache", None)
            if cache is None or memo is not None:
                return copy.deepcopy(obj, memo)
            if id(obj) not in cache:
                cache[id(obj)] = (obj, copy.deepcopy(obj))  # the original pins the id
            return cache[id(obj)][1]

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        local.cache = {}
        try:
            return original(self, transact_items)
        finally:
            local.cache = None

    models.copy = CopyOncePerTransaction()  # type: ignore[assignment]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _moto_dynamodb_and_s3_one_request_at_a_time() -> None:
    """DynamoDB applies a conditional write atomically and a transaction in isolation; moto's
    threaded server does neither: it checks a condition, then writes, in Python, and another
    request thread can pass the same check in between (two conditional requeues of one task
    both succeed), and a cancelled transaction puts back a copy of whole tables taken before
    it, undoing the writes other threads made meanwhile. Its S3 is the same: two
    ``If-None-Match: *`` puts of one key can both succeed, and a read or write of a key being
    replaced can fail on the old object's closed buffer. One lock around moto's DynamoDB
    requests and one around its S3 requests give the guarantees AWS documents (moto runs
    under one GIL anyway, so nothing is slower). Our code and boto3 are untouched; SQS
    requests are not held."""
    import threading

    from moto.dynamodb.responses import DynamoHandler
    from moto.s3.responses import S3Response

    def held(method: Any, lock: threading.RLock) -> Any:
        def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return one_at_a_time

    DynamoHandler.call_action = held(DynamoHandler.call_action, threading.RLock())  # type: ignore[method-assign]
    s3_lock = threading.RLock()
    S3Response.key_response = held(S3Response.key_response, s3_lock)  # type: ignore[method-assign]
    S3Response.bucket_response = held(S3Response.bucket_response, s3_lock)  # type: ignore[method-assign]


@contextmanager
def threads_interleave_often() -> Iterator[None]:
    """Switch Python threads every 0.1 ms instead of every 5 ms: a check-then-write
    that is not atomic (in a store, or in moto's server, which runs in the test process) then
    loses its race in every run instead of one run in two."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@contextmanager
def aws_env() -> Iterator[None]:
    """Dummy AWS credentials in the environment, for as long as an AWS backend is in use
    (and for the processes a test starts meanwhile); the old values come back afterwards."""
    patch = pytest.MonkeyPatch()
    for name, value in AWS_TEST_ENV.items():
        patch.setenv(name, value)
    try:
        yield
    finally:
        patch.undo()


@contextmanager
def aws_grid(tag: str, queues: int = 10, bucket: str | None = None) -> Iterator[str]:
    """A fresh grid (tables, queues, optional bucket) on moto; removed afterwards."""
    endpoint = moto_endpoint()
    from htcgrid.store import aws_admin
    from htcgrid.store.aws_calls import AwsConfig

    config = AwsConfig(AWS_REGION, endpoint, tag)
    with aws_env():
        aws_admin.create(config, queues, bucket, report=lambda line: None)
        try:
            yield f"aws://?region={AWS_REGION}&tag={tag}&endpoint_url={endpoint}"
        finally:
            aws_admin.destroy(config, queues, bucket, report=lambda line: None)


@contextmanager
def s3_bucket(bucket: str) -> Iterator[str]:
    """A fresh bucket on moto, as an ``s3://`` data-plane URL; emptied and removed afterwards."""
    endpoint = moto_endpoint()
    from htcgrid.store import aws_admin
    from htcgrid.store.aws_calls import AwsConfig

    config = AwsConfig(AWS_REGION, endpoint, "unused")
    with aws_env():
        aws_admin.create_bucket(config, bucket, report=lambda line: None)
        try:
            yield f"s3://{bucket}/data?region={AWS_REGION}&endpoint_url={endpoint}"
        finally:
            aws_admin.destroy_bucket(config, bucket, report=lambda line: None)
