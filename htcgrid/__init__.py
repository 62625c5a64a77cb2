"""htcgrid: a high-throughput compute grid for Lambda-style Python tasks.

import htcgrid
grid = htcgrid.connect("http://127.0.0.1:8080")
session = grid.submit([{"x": 1}, {"x": 2}])
for result in session.results():
    print(result.task_id, result.output)
"""

from __future__ import annotations

__version__ = "0.1.0"

from htcgrid.client import Client, Session, TaskResult, connect
from htcgrid.client.executor import Executor
from htcgrid.errors import (
    AuthError,
    BackendUnavailable,
    ConfigurationError,
    Conflict,
    Forbidden,
    GridError,
    NoAgentWarning,
    NotFound,
    PackageCorrupt,
    PayloadTooLarge,
    RemoteError,
    ResourceMissing,
    RuntimeMismatch,
    StorageFull,
    TaskFailed,
    TokenExpired,
    TooManyAttempts,
    TooManyRequests,
    UnknownFunction,
    ValidationError,
)
from htcgrid.models import TaskState

__all__ = [
    "AuthError",
    "BackendUnavailable",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Executor",
    "Forbidden",
    "GridError",
    "NoAgentWarning",
    "NotFound",
    "PackageCorrupt",
    "PayloadTooLarge",
    "RemoteError",
    "ResourceMissing",
    "RuntimeMismatch",
    "Session",
    "StorageFull",
    "TaskFailed",
    "TaskResult",
    "TaskState",
    "TokenExpired",
    "TooManyAttempts",
    "TooManyRequests",
    "UnknownFunction",
    "ValidationError",
    "__version__",
    "connect",
]
