"""Settings with units in their names; defaults are design §2's.

``Settings`` tunes the grid (leases, attempts, limits); ``SecurityConfig`` tunes one API server
(authentication, body size, request rate). Both read ``HTCGRID_<NAME>`` through one ``from_env``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Self

from htcgrid.errors import ConfigurationError


class FromEnv:
    """``from_env`` and ``with_`` for a frozen dataclass of numbers (a bool field is not read)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Self:
        """``HTCGRID_<NAME>`` for every numeric field (e.g. ``HTCGRID_LEASE_SECONDS=30``)."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            name = f"HTCGRID_{f.name.upper()}"
            raw = environ.get(name)
            if raw is None or f.type in (bool, "bool"):
                continue
            kind = int if f.type in (int, "int") else float
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Self:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]


@dataclass(frozen=True)
class Settings(FromEnv):
    heartbeat_seconds: float = 2.0
    lease_seconds: float = 10.0
    ttl_check_seconds: float = 2.0
    task_timeout_seconds: float = 3600.0
    max_attempts: int = 6
    inline_limit_bytes: int = 64 * 1024  # bigger payloads and results go to the data plane
    log_limit_bytes: int = 64 * 1024  # captured stdout/stderr kept per task (the tail)
    grace_seconds: float = 30.0
    prefetch_seconds: float = 0.1  # work an agent holds per slot beyond the running task
    max_tasks_per_submit: int = 1_000_000
    max_payload_bytes: int = 256 * 1024 * 1024  # one task's payload or result, as JSON
    poison_after: int = 3  # attempts that kill their worker before a task is failed as poison
    upload_expiry_seconds: float = 86400.0  # a session uploaded in parts must commit by then
    retention_seconds: float = 7 * 86400.0  # a session ended longer ago is purged
    purge_check_seconds: float = 60.0  # how often the server looks for sessions to purge

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"{f.name} must be positive, not {value}")
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigurationError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be below "
                f"lease_seconds ({self.lease_seconds}), or live tasks would expire"
            )


@dataclass(frozen=True)
class SecurityConfig(FromEnv):
    """Authentication and limits of one API server; ``HTCGRID_<NAME>`` sets each number."""

    auth: bool = True
    access_token_seconds: float = 3600.0
    refresh_token_seconds: float = 30 * 86400.0
    max_body_bytes: int = 64 * 1024 * 1024
    rate_limit_per_second: float = 1000.0  # per credential (or per client address); 0: off
    rate_limit_burst: int = 2000
    login_free_attempts: int = 3  # wrong passwords before each further try is delayed
    login_max_delay_seconds: float = 60.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "auth" and (value < 0 or not math.isfinite(value)):
                raise ConfigurationError(f"{f.name} must not be negative")
        if self.access_token_seconds <= 0 or self.max_body_bytes <= 0:
            raise ConfigurationError("access_token_seconds and max_body_bytes must be positive")
