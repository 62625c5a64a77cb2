"""Task store backends, chosen by URL scheme.

| scheme                      | backend                         | extra        |
|-----------------------------|---------------------------------|--------------|
| ``memory://``               | in-process, for tests           |              |
| ``sqlite:///path/grid.db``  | embedded default                |              |
| ``postgresql://…``          | PostgreSQL (SKIP LOCKED)        | ``postgres`` |
| ``redis://…``, ``rediss://``| Redis (Lua compare-and-set)     | ``redis``    |
| ``aws://?region=…&tag=…``   | DynamoDB + SQS (HTC-Grid layout)| ``aws``      |
"""

from __future__ import annotations

from htcgrid.registry import Registry
from htcgrid.store.base import TaskStore

STORES: Registry[TaskStore] = Registry(
    "task store",
    {
        "memory": ("htcgrid.store.memory:MemoryTaskStore", None),
        "sqlite": ("htcgrid.store.sqlite:SQLiteTaskStore", None),
        "postgresql": ("htcgrid.store.postgres:PostgresTaskStore", "postgres"),
        "postgres": ("htcgrid.store.postgres:PostgresTaskStore", "postgres"),
        "redis": ("htcgrid.store.redis:RedisTaskStore", "redis"),
        "rediss": ("htcgrid.store.redis:RedisTaskStore", "redis"),
        "aws": ("htcgrid.store.aws:AwsTaskStore", "aws"),
    },
)


def open_store(url: str, create: bool = True) -> TaskStore:
    """A task store for ``url``; raises ConfigurationError for an unknown scheme or missing extra.

    With ``create`` False (read commands) a store that does not exist yet raises NotFound
    instead of being created; backends that cannot tell (memory, PostgreSQL, Redis) ignore it.
    """
    return STORES.open(url) if create else STORES.open(url, create=False)


__all__ = ["STORES", "TaskStore", "open_store"]
