"""Settings from the environment, URL helpers, and the CLI's promise of an HTCGRID_* variable per option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.errors import ConfigurationError
from htcgrid.settings import Settings
from htcgrid.store import open_store
from htcgrid.urls import local_path, redact, scheme_of


def test_settings_from_env_and_overrides() -> None:
    s = Settings.from_env(
        {"HTCGRID_LEASE_SECONDS": "30", "HTCGRID_MAX_ATTEMPTS": "3"}, heartbeat_seconds=5
    )
    assert (s.lease_seconds, s.max_attempts, s.heartbeat_seconds) == (30.0, 3, 5)
    with pytest.raises(ConfigurationError, match="not a number"):
        Settings.from_env({"HTCGRID_LEASE_SECONDS": "soon"})
    with pytest.raises(ConfigurationError, match="must be below"):
        Settings(heartbeat_seconds=10, lease_seconds=5)
    with pytest.raises(ConfigurationError, match="positive"):
        Settings(max_attempts=0)


def test_urls() -> None:
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"
    assert str(local_path("sqlite:///var/grid.db")) == "/var/grid.db"
    assert str(local_path("sqlite://rel/grid.db?poll_ms=1")) == "rel/grid.db"
    assert scheme_of("postgresql+psycopg://h/db") == "postgresql"
    with pytest.raises(ConfigurationError, match="no scheme"):
        scheme_of("grid.db")
    with pytest.raises(ConfigurationError, match="known: "):
        open_store("mongodb://h/db")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += _commands(command, prefix + name + " ")
    return found


@pytest.mark.parametrize(
    "name,command", _commands(main), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_option_has_an_htcgrid_variable(name: str, command: click.Command) -> None:
    missing = [
        p.name
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not p.is_eager
        and not (isinstance(p.envvar, str) and p.envvar.startswith("HTCGRID_"))
    ]  # fmt: skip
    assert missing == [], f"htcgrid {name}: options without an HTCGRID_* variable: {missing}"


def test_help_and_bad_input() -> None:
    runner = CliRunner()
    assert "htcgrid up" in runner.invoke(main, ["--help"]).output
    result = runner.invoke(main, ["submit", "-", "--url", "memory://"], input="[1, 2")
    assert result.exit_code == 1 and "not valid JSON" in result.stderr
