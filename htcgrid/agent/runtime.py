"""What a worker process needs to call a handler: loading it, and the Lambda ``context``."""

from __future__ import annotations

import importlib
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from htcgrid.agent.lambda_env import DEFAULT_REGION, function_arn, log_group_name
from htcgrid.errors import ConfigurationError
from htcgrid.models import ErrorInfo

Handler = Callable[[Any, Any], Any]


def load_handler(spec: str, paths: list[str] | None = None) -> Handler:
    """Import ``module.function`` or ``module:function`` (with ``paths`` first on sys.path)."""
    for path in reversed(paths or []):
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigurationError(
            f"handler must be 'module.function' or 'module:function', not {spec!r}"
        )
    module = importlib.import_module(module_name)
    try:
        handler = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no function {attr!r}") from None
    if not callable(handler):
        raise ConfigurationError(f"{spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


def error_info(exc: BaseException) -> ErrorInfo:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return ErrorInfo(type(exc).__name__, str(exc), tb)


@dataclass
class LambdaContext:
    """The AWS Lambda context object (design §4), plus htcgrid's own task coordinates.

    ``identity`` and ``client_context`` are None, as for an asynchronous invoke; the ARN
    names the worker's region (``lambda_env``) and a placeholder account."""

    function_name: str
    function_version: str
    memory_limit_in_mb: int
    session_id: str
    task_id: str
    attempt: int
    deadline: float  # time.monotonic() value
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_stream_name: str = ""
    region: str = DEFAULT_REGION
    identity: Any = None
    client_context: Any = None
    common_loader: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def invoked_function_arn(self) -> str:
        return function_arn(self.function_name, self.region)

    @property
    def log_group_name(self) -> str:
        return log_group_name(self.function_name)

    @property
    def common(self) -> Any:
        """The session's common data (None if it has none): read from the data plane on
        first use, once per worker per session (``htcgrid.common_data``)."""
        return None if self.common_loader is None else self.common_loader()

    @property
    def inputs(self) -> list[Any]:
        """A task graph's task: the outputs of the tasks it depends on, in the order they were
        named (``htcgrid.agent.inputs``); an empty list for a task without dependencies."""
        from htcgrid.agent.inputs import current

        return current()

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))
