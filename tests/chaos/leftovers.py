"""Count what a grid still holds once every session is deleted: rows, keys and blobs.

Grid metadata (the data-plane URL, agent presence, users) is expected to stay; sessions,
tasks, session progress records and data-plane objects are not. Each backend is read in its
own language, beside the grid's code, so a leak the grid cannot see is still counted.
"""

from __future__ import annotations

import sqlite3
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
        keys = [k for k in client.scan_iter(match=prefix + "*", count=1000) if k not in kept]
        if client.exists(f"{prefix}sessions"):
            keys.append(b"sessions")  # the index of sessions must be empty by now
        return len(keys)
    finally:
        client.close()


def _aws(url: str) -> int:
    from htcgrid.store import open_store

    store = open_store(url)
    try:
        return len(store.list_sessions(limit=1000)) + sum(store.task_counts().values())
    finally:
        store.close()
