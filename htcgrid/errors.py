"""The one exception tree of htcgrid: every error the client, the CLI or the API raises on
purpose is one of these, and all are importable from ``htcgrid``.

    GridError
    ├── ConfigurationError        a bad URL, setting or missing extra: fix the configuration
    │   └── ResourceMissing       an AWS table, queue or bucket of the grid does not exist
    ├── ValidationError           bad input from a caller: nothing was changed
    │   ├── PayloadTooLarge       over a size limit: send less
    │   └── UnknownFunction       a session names a function that is not deployed
    ├── NotFound                  an unknown session, task or function
    ├── Conflict                  a session id reused with different content
    ├── AuthError                 missing, expired or revoked credentials
    │   ├── Forbidden
    │   └── TokenExpired
    ├── TooManyRequests           rate limited: retry after ``retry_after_seconds``
    │   └── TooManyAttempts
    ├── BackendUnavailable        the task store or data plane cannot be reached (retry later)
    │   └── StorageFull           the task store's disk is full: free space where it says
    ├── PackageCorrupt            a function package does not match its recorded sha256
    ├── TaskFailed                ``Session.outputs()``: some task failed or was cancelled
    └── RemoteError               the HTTP API answered with an error the client cannot map

A lost race (a refused completion, an empty queue) is a return value, never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GridError(Exception):
    """Root of every error htcgrid raises on purpose."""

    code = "grid_error"
    status = 500


class ConfigurationError(GridError):
    """A URL, setting, file or missing extra is wrong: fix the configuration and start again."""

    code = "configuration_error"
    status = 500


class RuntimeMismatch(ConfigurationError):
    """A Python callable cannot run on the grid's agents: their Python or cloudpickle
    (major.minor) differs from the client's. The message names both."""

    code = "runtime_mismatch"


class ResourceMissing(ConfigurationError):
    """A table, queue or bucket of the grid does not exist: ``htcgrid aws create`` makes it."""


class ValidationError(GridError):
    """The caller's input is invalid; nothing was changed. The message names the field."""

    code = "invalid_request"
    status = 400


class PayloadTooLarge(ValidationError):
    """A task or request body is over the grid's size limit: send less."""

    code = "payload_too_large"
    status = 413


class UnknownFunction(ValidationError):
    """A session names a function that is neither deployed nor the default."""

    code = "unknown_function"


class NotFound(GridError):
    """No such session, task, function, user or key."""

    code = "not_found"
    status = 404


class Conflict(GridError):
    """A session id reused with different content, or a name that already exists."""

    code = "conflict"
    status = 409


class AuthError(GridError):
    """Missing, expired or revoked credentials: log in (again) or pass a token."""

    code = "unauthorized"
    status = 401


class Forbidden(AuthError):
    """The credentials are valid but their role may not do this."""

    code = "forbidden"
    status = 403


class TokenExpired(AuthError):
    """A bearer token is past its lifetime: refresh it or log in again."""

    code = "token_expired"


class TooManyRequests(GridError):
    """Slow down: the request was refused before it did anything; retry after a pause."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class TooManyAttempts(TooManyRequests):
    """Too many wrong passwords for this user from this client: wait before the next try."""

    code = "too_many_attempts"


class BackendUnavailable(GridError):
    """The grid, its task store or its data plane cannot be reached now: retry later."""

    code = "backend_unavailable"
    status = 503


class StorageFull(BackendUnavailable):
    """The task store cannot write: its file system (or database server) is out of space.
    The message names where and what to free; nothing of the refused write was kept. Agents
    back off and carry on once there is room again; clients are told at once."""

    code = "storage_full"
    status = 507


class PackageCorrupt(GridError):
    """A function package's bytes do not match the sha256 recorded when it was deployed."""

    code = "package_corrupt"


class TaskFailed(GridError):
    """Raised by ``Session.outputs()`` (and so ``Client.map``) when any task did not finish;
    ``failures`` holds the results of those tasks (``TaskResult``)."""

    code = "task_failed"

    def __init__(self, failures: Sequence[Any]) -> None:
        first = failures[0]
        detail = (first.error or {}).get("message", first.state.value)
        super().__init__(f"{len(failures)} task(s) did not finish; {first.task_id}: {detail}")
        self.failures = list(failures)


class RemoteError(GridError):
    """The API answered with an error this client does not know; ``status`` and ``code`` are
    the server's."""

    code = "remote_error"

    def __init__(self, message: str, status: int = 500, code: str = "remote_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


BY_STATUS: dict[int, type[GridError]] = {
    400: ValidationError,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: BackendUnavailable,
    507: StorageFull,
}
"""The family of an HTTP error whose code a client does not know (a newer server's)."""

BY_CODE: dict[str, type[GridError]] = {
    cls.code: cls
    for cls in (
        ConfigurationError,
        ValidationError,
        PayloadTooLarge,
        UnknownFunction,
        NotFound,
        Conflict,
        AuthError,
        Forbidden,
        TokenExpired,
        BackendUnavailable,
        StorageFull,
        PackageCorrupt,
    )
}


class NoAgentWarning(UserWarning):
    """Warned when a session is submitted to a grid on which no agent has been seen for a while."""
