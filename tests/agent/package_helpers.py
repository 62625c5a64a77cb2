"""Shared by the package tests: an agent that serves deployed functions, and a real wheel."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent_thread import running
from procs import until
from sample_handlers_path import HERE

from htcgrid.agent.agent import Agent
from htcgrid.agent.packages import PackageCache
from htcgrid.agent.worker import WorkerConfig
from htcgrid.functions import FunctionRegistry
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings

FAST = Settings(heartbeat_seconds=0.2, lease_seconds=2.0, ttl_check_seconds=0.2, grace_seconds=5)


@contextmanager
def package_agent(
    grid: GridService, cache_dir: Path, slots: int = 2, functions: list[str] | None = None
) -> Iterator[Agent]:
    worker = WorkerConfig(handler="sample_handlers.echo", paths=(HERE,))
    cache = PackageCache(FunctionRegistry(grid.data), cache_dir, worker, refresh_seconds=0)
    with running(
        Agent(grid.store, grid.data, FAST, worker, slots, functions, packages=cache)
    ) as runner:
        yield runner


def submit(grid: GridService, tasks: list[Any], **options: Any) -> str:
    return grid.submit(SubmitRequest(tasks=tasks, **options)).session_id


def finished(grid: GridService, session_id: str, timeout: float = 60) -> list[Any]:
    until(lambda: grid.session(session_id).complete, timeout, f"session {session_id}")
    return sorted(grid.results(session_id, 0, 10_000).results, key=lambda r: r.index)


def build_wheel(folder: Path, name: str, version: str, source: str) -> Path:
    """A minimal, valid pure-Python wheel, built by hand so the test needs no network."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def pip_install_target(target: Path, *requirements: str, find_links: Path | None = None) -> None:
    """The seed's recipe, step 4: ``pip install --target=DIR …`` (offline)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    if find_links is not None:
        command += ["--find-links", str(find_links)]
    subprocess.run([*command, f"--target={target}", *requirements], check=True)


def zip_recipe(folder: Path) -> Path:
    """The seed's recipe, step 5: ``zip -yr lambda.zip .`` inside the folder."""
    subprocess.run(["zip", "-qyr", "lambda.zip", "."], cwd=folder, check=True)
    return folder / "lambda.zip"


def outputs(grid: GridService, session_id: str, timeout: float = 60) -> list[Any]:
    """Every task's decoded output, in task order (None for a task that did not finish)."""
    records = finished(grid, session_id, timeout)
    return [
        json.loads(r.output if r.output is not None else grid.data.get(r.output_ref))
        if r.output is not None or r.output_ref
        else None
        for r in records
    ]
