"""Settings and the security config: design §2's defaults, what each refuses, and
``from_env``'s one ``HTCGRID_<NAME>`` variable per number (tests/test_settings_cli.py has the
CLI's side)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from htcgrid.errors import ConfigurationError
from htcgrid.settings import Settings


def security_class() -> Any:
    """SecurityConfig, wherever the package keeps it."""
    try:
        from htcgrid.settings import SecurityConfig  # type: ignore[attr-defined]
    except ImportError:
        from htcgrid.limits import SecurityConfig  # type: ignore[import-not-found,no-redef]
    return SecurityConfig


def numbers(cls: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name != "auth"]


def is_int(f: dataclasses.Field[Any]) -> bool:
    return f.type in (int, "int")


# ---- Settings --------------------------------------------------------------------------------


def test_the_defaults_are_design_s() -> None:
    s = Settings()
    assert (s.heartbeat_seconds, s.lease_seconds, s.ttl_check_seconds) == (2.0, 10.0, 2.0)
    assert (s.task_timeout_seconds, s.max_attempts) == (3600.0, 6)
    assert s.inline_limit_bytes <= s.max_payload_bytes


@pytest.mark.parametrize(("heartbeat", "lease"), [(10, 10), (11, 10), (10.0, 9.99)])
def test_a_heartbeat_not_below_the_lease_is_refused(heartbeat: float, lease: float) -> None:
    with pytest.raises(ConfigurationError, match=r"heartbeat_seconds .* must be below lease"):
        Settings(heartbeat_seconds=heartbeat, lease_seconds=lease)


def test_a_heartbeat_just_below_the_lease_is_accepted() -> None:
    assert Settings(heartbeat_seconds=9.99, lease_seconds=10).lease_seconds == 10


@pytest.mark.parametrize("name", [f.name for f in numbers(Settings)])
@pytest.mark.parametrize("value", [0, -1])
def test_every_setting_must_be_positive(name: str, value: int) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings(**{name: value})


@pytest.mark.parametrize("name", ["lease_seconds", "heartbeat_seconds", "task_timeout_seconds"])
def test_a_setting_that_is_not_a_number_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings(**{name: math.nan})
    with pytest.raises(ConfigurationError):
        Settings.from_env({f"HTCGRID_{name.upper()}": "nan"})


@pytest.mark.parametrize("f", numbers(Settings), ids=lambda f: f.name)
def test_from_env_reads_each_setting_from_its_variable(f: dataclasses.Field[Any]) -> None:
    raw = "1" if f.name == "heartbeat_seconds" else ("7" if is_int(f) else "12.5")
    s = Settings.from_env({f"HTCGRID_{f.name.upper()}": raw, "HTCGRID_UNRELATED": "x"})
    value = getattr(s, f.name)
    assert value == (int(raw) if is_int(f) else float(raw))
    assert type(value) is (int if is_int(f) else float)
    others = {g.name: getattr(s, g.name) for g in numbers(Settings) if g.name != f.name}
    assert others == {k: v for k, v in dataclasses.asdict(Settings()).items() if k != f.name}


@pytest.mark.parametrize(
    ("name", "raw"),
    [("LEASE_SECONDS", "soon"), ("LEASE_SECONDS", ""), ("LEASE_SECONDS", "1,5"),
     ("MAX_ATTEMPTS", "3.5"), ("MAX_ATTEMPTS", "six"), ("MAX_PAYLOAD_BYTES", "1e6"),
     ("INLINE_LIMIT_BYTES", "64k")],
)  # fmt: skip
def test_from_env_refuses_a_value_that_is_not_a_number_naming_it(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=f"HTCGRID_{name}={raw!r} is not a number"):
        Settings.from_env({f"HTCGRID_{name}": raw})


def test_from_env_checks_the_values_it_reads() -> None:
    with pytest.raises(ConfigurationError, match="must be below"):
        Settings.from_env({"HTCGRID_HEARTBEAT_SECONDS": "30"})
    with pytest.raises(ConfigurationError, match="max_attempts must be positive"):
        Settings.from_env({"HTCGRID_MAX_ATTEMPTS": "0"})


def test_overrides_beat_the_environment_and_none_is_no_override() -> None:
    env = {"HTCGRID_LEASE_SECONDS": "30", "HTCGRID_MAX_ATTEMPTS": "3"}
    s = Settings.from_env(env, lease_seconds=40.0, max_attempts=None, heartbeat_seconds=None)
    assert (s.lease_seconds, s.max_attempts, s.heartbeat_seconds) == (40.0, 3, 2.0)
    assert Settings.from_env({}) == Settings()


def test_with_changes_only_what_is_given_and_checks_it_again() -> None:
    base = Settings(lease_seconds=20.0)
    assert base.with_(max_attempts=2, lease_seconds=None) == Settings(
        lease_seconds=20.0, max_attempts=2
    )
    assert base.with_() == base
    with pytest.raises(ConfigurationError, match="must be below"):
        base.with_(heartbeat_seconds=25.0)


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().lease_seconds = 1.0  # type: ignore[misc]


# ---- the security config ---------------------------------------------------------------------


def test_the_security_defaults() -> None:
    c = security_class()()
    assert c.auth is True and c.access_token_seconds == 3600.0
    assert c.refresh_token_seconds == 30 * 86400.0 and c.max_body_bytes == 64 * 1024 * 1024
    assert (c.rate_limit_per_second, c.rate_limit_burst) == (1000.0, 2000)
    assert (c.login_free_attempts, c.login_max_delay_seconds) == (3, 60.0)


@pytest.mark.parametrize("name", [f.name for f in numbers(security_class())])
@pytest.mark.parametrize("value", [-1, math.inf, math.nan])
def test_a_security_limit_may_not_be_negative_or_infinite(name: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=name):
        security_class()(**{name: value})


@pytest.mark.parametrize("name", ["access_token_seconds", "max_body_bytes"])
def test_tokens_and_bodies_need_a_positive_limit(name: str) -> None:
    with pytest.raises(ConfigurationError, match="must be positive"):
        security_class()(**{name: 0})


def test_zero_turns_off_the_limits_that_may_be_off() -> None:
    c = security_class()(rate_limit_per_second=0, login_free_attempts=0, refresh_token_seconds=0)
    assert (c.rate_limit_per_second, c.login_free_attempts, c.refresh_token_seconds) == (0, 0, 0)


def test_security_from_env_reads_numbers_and_never_turns_auth_off() -> None:
    env = {
        "HTCGRID_AUTH": "0",
        "HTCGRID_MAX_BODY_BYTES": "1000",
        "HTCGRID_RATE_LIMIT_PER_SECOND": "2.5",
        "HTCGRID_ACCESS_TOKEN_SECONDS": "60",
    }
    c = security_class().from_env(env)
    assert c.auth is True
    assert (c.max_body_bytes, c.rate_limit_per_second, c.access_token_seconds) == (1000, 2.5, 60)
    assert security_class().from_env(env, auth=False, max_body_bytes=None).auth is False
    with pytest.raises(ConfigurationError, match="HTCGRID_RATE_LIMIT_BURST='lots'"):
        security_class().from_env({"HTCGRID_RATE_LIMIT_BURST": "lots"})
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        security_class().from_env({"HTCGRID_MAX_BODY_BYTES": "-5"})
