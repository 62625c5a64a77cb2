"""The execution environment AWS Lambda gives a handler, built once in each worker process.

``enter(config)`` is the first thing a worker does (both runtimes). Afterwards, as on Lambda:

- the environment holds ``AWS_LAMBDA_FUNCTION_NAME``, ``…_VERSION``, ``…_MEMORY_SIZE``,
  ``AWS_LAMBDA_LOG_GROUP_NAME``, ``AWS_LAMBDA_LOG_STREAM_NAME``, ``AWS_REGION`` and
  ``AWS_DEFAULT_REGION``, ``LAMBDA_TASK_ROOT``, ``LAMBDA_RUNTIME_DIR``, ``_HANDLER`` and
  ``TZ=:UTC`` (``variables``);
- the working directory is the function's unpacked package (``task_root``), so handlers open
  their data files by relative path;
- ``TMPDIR`` (and ``tempfile.tempdir``) is a private folder of this worker. It is removed when
  the worker exits, and, when the worker was killed instead, by the next worker to start on
  this machine (each folder is named after the process that owns it).

The Lambda values a context reports (``context_fields``) are computed here too, so the
environment and ``context`` always agree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from multiprocessing import util
from pathlib import Path
from typing import Any, Protocol

DEFAULT_MEMORY_MB = 128  # what Lambda gives a function deployed without a memory size
DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
RUNTIME_DIR = str(Path(__file__).resolve().parent)
_WORKERS_DIR = f"htcgrid-workers-{os.getuid()}"


class FunctionConfig(Protocol):
    """What a worker knows about the function it runs (``WorkerConfig`` satisfies it)."""

    @property
    def handler(self) -> str: ...
    @property
    def paths(self) -> tuple[str, ...]: ...
    @property
    def function_name(self) -> str: ...
    @property
    def function_version(self) -> str: ...
    @property
    def memory_mb(self) -> int: ...
    @property
    def agent_id(self) -> str: ...
    @property
    def region(self) -> str: ...


def memory_mb(config: FunctionConfig) -> int:
    """The function's memory size; Lambda's default when it was deployed without one."""
    return config.memory_mb if config.memory_mb > 0 else DEFAULT_MEMORY_MB


def function_arn(function_name: str, region: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


@functools.cache
def log_stream_name(function_version: str, agent_id: str) -> str:
    """One stream per worker process, dated when it started (Lambda's format)."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{function_version}]{agent_id}"


def task_root(config: FunctionConfig) -> str:
    """The unpacked package (the first ``--path`` of a handler given on the command line)."""
    return config.paths[0] if config.paths else os.getcwd()


def context_fields(config: FunctionConfig) -> dict[str, Any]:
    """The keyword arguments of ``LambdaContext`` that describe the function."""
    return {
        "function_name": config.function_name,
        "function_version": config.function_version,
        "memory_limit_in_mb": memory_mb(config),
        "log_stream_name": log_stream_name(config.function_version, config.agent_id),
        "region": config.region or DEFAULT_REGION,
    }


def variables(config: FunctionConfig) -> dict[str, str]:
    """The environment variables Lambda sets for a function (``TMPDIR`` aside)."""
    region = config.region or DEFAULT_REGION
    return {
        "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": config.function_version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb(config)),
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group_name(config.function_name),
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(config.function_version, config.agent_id),
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": task_root(config),
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "_HANDLER": config.handler,
        "TZ": ":UTC",
    }


def enter(config: FunctionConfig) -> str:
    """Make this process a Lambda execution environment for ``config``; returns its TMPDIR.

    Call once, first thing in a worker process: it changes this process's environment,
    working directory, time zone and temp folder."""
    root = task_root(config)
    _absolute_import_path()
    private = _private_tmpdir()
    os.environ.update(variables(config))
    os.environ["TMPDIR"] = private
    tempfile.tempdir = private
    time.tzset()
    with contextlib.suppress(OSError):  # a missing package fails as the handler's import error
        os.chdir(root)
    return private


def _absolute_import_path() -> None:
    """Keep imports that relied on the old working directory working after ``chdir``."""
    here = os.getcwd()
    sys.path[:] = [os.path.join(here, entry) if entry != "" else here for entry in sys.path]


def _private_tmpdir() -> str:
    """A new folder for this process, after removing those of workers that are gone."""
    parent = Path(tempfile.gettempdir()) / _WORKERS_DIR
    parent.mkdir(mode=0o700, exist_ok=True)
    for folder in parent.iterdir():
        if not _owner_alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)
    private = tempfile.mkdtemp(prefix=f"w{os.getpid()}-", dir=parent)
    # runs when a multiprocessing worker's target returns or calls sys.exit
    util.Finalize(None, shutil.rmtree, (private,), {"ignore_errors": True}, exitpriority=1)
    return private


def _owner_alive(name: str) -> bool:
    """Whether the process a worker folder is named after (``w<pid>-…``) still runs."""
    pid_text = name[1:].partition("-")[0]
    if not name.startswith("w") or not pid_text.isdigit():
        return True  # not ours to remove
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid_text}/stat").read_text().split(") ")[-1][:1] != "Z"
    return True
