"""The one exception tree of htcgrid.

    GridError
    ├── ConfigurationError        a bad URL, setting or missing extra: fix the configuration
    ├── ValidationError           bad input from a caller: nothing was changed
    │   └── PayloadTooLarge
    ├── NotFound                  an unknown session, task or function
    ├── Conflict                  a session id reused with different content
    ├── AuthError                 missing, expired or revoked credentials
    │   └── Forbidden
    ├── BackendUnavailable        the task store or data plane cannot be reached (retry later)
    └── RemoteError               the HTTP API answered with an error the client cannot map

A lost race (a refused completion, an empty queue) is a return value, never an exception.
"""

from __future__ import annotations


class GridError(Exception):
    """Root of every error htcgrid raises on purpose."""

    code = "grid_error"
    status = 500


class ConfigurationError(GridError):
    code = "configuration_error"
    status = 500


class ValidationError(GridError):
    code = "invalid_request"
    status = 400


class PayloadTooLarge(ValidationError):
    code = "payload_too_large"
    status = 413


class NotFound(GridError):
    code = "not_found"
    status = 404


class Conflict(GridError):
    code = "conflict"
    status = 409


class AuthError(GridError):
    code = "unauthorized"
    status = 401


class Forbidden(AuthError):
    code = "forbidden"
    status = 403


class BackendUnavailable(GridError):
    code = "backend_unavailable"
    status = 503


class RemoteError(GridError):
    code = "remote_error"

    def __init__(self, message: str, status: int = 500, code: str = "remote_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


BY_CODE: dict[str, type[GridError]] = {
    cls.code: cls
    for cls in (
        ConfigurationError,
        ValidationError,
        PayloadTooLarge,
        NotFound,
        Conflict,
        AuthError,
        Forbidden,
        BackendUnavailable,
    )
}
