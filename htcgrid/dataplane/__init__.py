"""Data plane backends, chosen by URL scheme.

| scheme                     | backend                          | extra      |
|----------------------------|----------------------------------|------------|
| ``memory://``              | in-process dict                  |            |
| ``file:///path``           | a folder, one file per key       |            |
| ``sqlite:///path/grid.db`` | a table beside the task store    |            |
| ``redis://…``              | Redis strings                    | ``redis``  |
| ``postgresql://…``         | a PostgreSQL table               | ``postgres``|
| ``s3://bucket/prefix``     | S3 objects (or MinIO, Ceph)      | ``aws``    |
"""

from __future__ import annotations

from htcgrid.dataplane.base import DataPlane
from htcgrid.registry import Registry

DATA_PLANES: Registry[DataPlane] = Registry(
    "data plane",
    {
        "memory": ("htcgrid.dataplane.memory:MemoryDataPlane", None),
        "file": ("htcgrid.dataplane.file:FileDataPlane", None),
        "sqlite": ("htcgrid.dataplane.sqlite:SQLiteDataPlane", None),
        "redis": ("htcgrid.dataplane.redis:RedisDataPlane", "redis"),
        "rediss": ("htcgrid.dataplane.redis:RedisDataPlane", "redis"),
        "postgresql": ("htcgrid.dataplane.postgres:PostgresDataPlane", "postgres"),
        "postgres": ("htcgrid.dataplane.postgres:PostgresDataPlane", "postgres"),
        "s3": ("htcgrid.dataplane.s3:S3DataPlane", "aws"),
    },
)


def open_data_plane(url: str) -> DataPlane:
    return DATA_PLANES.open(url)


__all__ = ["DATA_PLANES", "DataPlane", "open_data_plane"]
