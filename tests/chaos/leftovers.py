"""Count what a grid still holds once every session is deleted: rows, keys and blobs.

Grid metadata (the data-plane URL, agent presence, users) is expected to stay; sessions,
tasks, session progress records and data-plane objects are not. Each backend is read in its
own language, beside the grid's code, so a leak the grid cannot see is still counted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from htcgrid.urls import local_path


def leftover_objects(url: str) -> int:
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme.startswith("postgres"):
        return _postgres(url)
    if scheme == "redis":
        return _redis(url)
    if scheme == "aws":
        return _aws(url)
    raise ValueError(f"no leftover count for {url}")


def _sqlite(url: str) -> int:
    with sqlite3.connect(local_path(url)) as db:
        tables = ("sessions", "tasks", "blobs")
        present = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return sum(
            db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables if t in present
        )


def _postgres(url: str) -> int:
    import psycopg

    schema = parse_qs(urlsplit(url).query).get("schema", ["htcgrid"])[0]
    base = url.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        return sum(
            conn.execute(f'SELECT count(*) FROM "{schema}".{t}').fetchone()[0]  # type: ignore[index]
            for t in ("sessions", "tasks", "blobs")
        )


def _redis(url: str) -> int:
    import redis

    prefix = parse_qs(urlsplit(url).query).get("prefix", ["htcgrid:"])[0]
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        kept = {f"{prefix}{name}".encode() for name in ("seq", "sessions", "meta", "functions")}
        owners = f"{prefix}owners:".encode()  # sets of names: the owners with a queue of a
        keys = [  # function, pruned by the claims that find a queue gone (fair share)
            k
            for k in client.scan_iter(match=prefix + "*", count=1000)
            if k not in kept and not k.startswith(owners)
        ]
        if client.exists(f"{prefix}sessions"):
            keys.append(b"sessions")  # the index of sessions must be empty by now
        if keys:
            print("left in Redis:", sorted(keys)[:20])  # shown with a failing check
        return len(keys)
    finally:
        client.close()


def _aws(url: str) -> int:
    """Items of the tasks and sessions tables (DynamoDB), objects under the grid's data-plane
    prefix (S3) and messages ready or delayed in its queues and dead-letter queues (SQS);
    messages in flight are ``settle_queues``'s."""
    from htcgrid.backends import DATA_URL_KEY
    from htcgrid.store.aws_layout import sessions_table, tasks_table

    config = _aws_config(url)
    with _store(url) as store:
        data_url = store.get_meta(DATA_URL_KEY) or ""
    db = config.client("dynamodb")
    items = sum(
        page["Count"]
        for table in (tasks_table(config.tag), sessions_table(config.tag))
        for page in db.get_paginator("scan").paginate(TableName=table, Select="COUNT")
    )
    ready, _ = _sqs_messages(config)
    return items + _s3_objects(config, data_url) + ready


def settle_queues(url: str, wait_seconds: float) -> int:
    """AWS: let the grid's queues drop the messages of tasks that are gone, as any claimer
    does (it deletes what it receives, claimed or not); for up to ``wait_seconds``, waits for
    messages a killed agent had received, hidden for the queue's visibility timeout, to come
    back and be dropped too. Returns how many are still hidden."""
    config = _aws_config(url)
    deadline = time.monotonic() + wait_seconds
    with _store(url) as store:
        while True:
            ready, hidden = _sqs_messages(config)
            if ready:
                store.claim("chaos-check", 10, 1.0, time.time())
            elif not hidden or time.monotonic() >= deadline:
                return hidden
            else:
                time.sleep(1.0)  # the visibility timeout runs on SQS's clock, not ours


def _aws_config(url: str) -> Any:
    from htcgrid.store.aws_calls import AwsConfig

    options = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return AwsConfig(options["region"], options["endpoint_url"], options["tag"])


@contextmanager
def _store(url: str) -> Iterator[Any]:
    from htcgrid.store import open_store

    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def _s3_objects(config: Any, data_url: str) -> int:
    if not data_url.startswith("s3://"):
        return 0
    where = urlsplit(data_url)
    pages = config.client("s3").get_paginator("list_objects_v2")
    prefix = where.path.strip("/")
    return sum(p["KeyCount"] for p in pages.paginate(Bucket=where.netloc, Prefix=prefix))


READY = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
HIDDEN = "ApproximateNumberOfMessagesNotVisible"


def _sqs_messages(config: Any) -> tuple[int, int]:
    """Messages (ready or delayed, in flight) in the grid's queues and dead-letter queues."""
    sqs = config.client("sqs")
    urls = sqs.list_queues(QueueNamePrefix="htc_task_queue").get("QueueUrls", [])
    ready = hidden = 0
    for queue in [u for u in urls if u.endswith(tuple(f"-{config.tag}__{q}" for q in range(10)))]:
        found = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[*READY, HIDDEN])
        counts = {k: int(v) for k, v in found["Attributes"].items()}
        ready += sum(counts.get(name, 0) for name in READY)
        hidden += counts.get(HIDDEN, 0)
    return ready, hidden
