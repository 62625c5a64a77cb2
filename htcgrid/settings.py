"""Settings with units in their names; defaults are design §2's."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from htcgrid.errors import ConfigurationError


@dataclass(frozen=True)
class Settings:
    heartbeat_seconds: float = 2.0
    lease_seconds: float = 10.0
    ttl_check_seconds: float = 2.0
    task_timeout_seconds: float = 3600.0
    max_attempts: int = 6
    inline_limit_bytes: int = 64 * 1024  # bigger payloads and results go to the data plane
    log_limit_bytes: int = 64 * 1024  # captured stdout/stderr kept per task (the tail)
    grace_seconds: float = 30.0
    prefetch_seconds: float = 0.02  # work an agent holds per slot beyond the running task
    max_tasks_per_submit: int = 1_000_000
    max_payload_bytes: int = 256 * 1024 * 1024  # one task's payload or result, as JSON
    upload_expiry_seconds: float = 86400.0  # a session uploaded in parts must commit by then

    def __post_init__(self) -> None:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigurationError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be below "
                f"lease_seconds ({self.lease_seconds}), or live tasks would expire"
            )
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ConfigurationError(f"{f.name} must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """``HTCGRID_<NAME>`` for every field (e.g. ``HTCGRID_LEASE_SECONDS=30``)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"HTCGRID_{f.name.upper()}")
            if raw is not None:
                kind = int if f.type in (int, "int") else float
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ConfigurationError(
                        f"HTCGRID_{f.name.upper()}={raw!r} is not a number"
                    ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
