"""What every system module provides: start with N workers, run a batch, run one task."""

from __future__ import annotations

import abc
import importlib.util
from typing import Any, ClassVar


class Missing(Exception):
    """A peer's package is not installed, or a service it needs is not reachable."""


def need(*modules: str) -> None:
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if absent:
        raise Missing(f"not installed: {', '.join(absent)} (pip install -e '.[bench]')")


def unlink_matching(conn: Any, pattern: str) -> None:
    """Remove a run's keys from Redis, a thousand per command."""
    batch: list[bytes] = []
    for key in conn.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) == 1000:
            conn.unlink(*batch)
            batch.clear()
    if batch:
        conn.unlink(*batch)


class System(abc.ABC):
    """One system under test, started with ``workers`` worker processes.

    ``map`` runs ``peers.work.FUNCTIONS[fn]`` over ``args`` through the system's idiomatic fast
    path and returns the outputs in order; ``call`` is one round trip. Both may be called from
    many threads at once (W8): ``client`` gives each thread what it needs of its own.
    """

    name: ClassVar[str]
    services: ClassVar[tuple[str, ...]] = ()  # database servers whose CPU counts: redis, postgres
    durable: ClassVar[bool] = True

    def __init__(self, workers: int) -> None:
        self.workers = workers

    @classmethod
    def check(cls) -> None:
        """Raise Missing when this system cannot run here."""
        return None

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def map(self, fn: str, args: list[Any]) -> list[Any]: ...

    def call(self, fn: str, arg: Any) -> Any:
        return self.map(fn, [arg])[0]

    def forget(self) -> None:
        """Drop what the last ``map`` left behind, after it was measured (the peers hold
        nothing once their results are read; a grid keeps a session until it is deleted)."""
        return None

    def client(self) -> System:
        """A handle for one of W8's concurrent clients (default: this one, thread-safe)."""
        return self

    def close_client(self) -> None:
        """Release what ``client`` made."""
        return None
