"""Function packages on an agent: fetch, verify and unpack each version once, and say which
``WorkerConfig`` (function, version, handler) runs a function's tasks now.

A new version is a new config: its tasks go to new worker processes, while slots still
busy with the old version finish what they were sent and are retired once idle.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from htcgrid import pickled
from htcgrid.agent.worker import WorkerConfig
from htcgrid.functions import FunctionRegistry, FunctionVersion, unpack

log = logging.getLogger("htcgrid.agent")


def pickled_config(base: WorkerConfig) -> WorkerConfig:
    """The config of the built-in function ``htcgrid.python``: the agent's own (its paths
    too, so pickled code may import what the agent's machine has), running pickled calls."""
    return replace(
        base,
        handler=pickled.HANDLER,
        function_name=pickled.PYTHON_FUNCTION,
        function_version="{}.{}".format(*sys.version_info[:2]),
        runtime="python",
        timeout_seconds=None,
    )


class PackageCache:
    """Which config runs a function's tasks now; None means the agent's own handler."""

    def __init__(
        self,
        registry: FunctionRegistry,
        cache_dir: Path,
        base: WorkerConfig,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.cache_dir = cache_dir
        self.base = base
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._checked: dict[str, tuple[float, WorkerConfig | None]] = {}

    def config_for(self, function: str) -> WorkerConfig | None:
        """Raises GridError if the current package cannot be fetched or verified."""
        now = self.clock()
        known = self._checked.get(function)
        if known and now - known[0] < self.refresh_seconds:
            return known[1]
        version = self.registry.current(function)
        config = self._prepare(version) if version else None
        self._checked[function] = (now, config)
        return config

    def is_current(self, config: WorkerConfig) -> bool:
        known = self._checked.get(config.function_name)
        if config == self.base or config == pickled_config(self.base):
            return True
        return known is not None and known[1] == config

    def _prepare(self, version: FunctionVersion) -> WorkerConfig:
        folder = self.cache_dir / version.name / f"v{version.version}-{version.sha256[:16]}"
        if not folder.is_dir():
            self._unpack(version, folder)
        return replace(
            self.base,
            handler=version.handler,
            paths=(str(folder),),
            function_name=version.name,
            function_version=str(version.version),
            memory_mb=version.memory_mb,
            runtime=version.runtime,
            timeout_seconds=version.timeout_seconds,
        )

    def _unpack(self, version: FunctionVersion, folder: Path) -> None:
        package = self.registry.package(version)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder.parent))
        try:
            unpack(package, staging)
            staging.rename(folder)
        except FileExistsError:  # another agent sharing the cache got there first
            pass
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("unpacked %s v%d into %s", version.name, version.version, folder)
