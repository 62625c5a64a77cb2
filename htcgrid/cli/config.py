"""``htcgrid config check FILE``, the ``--config`` option of ``up``, ``server`` and ``agent``
(HTC-Grid's config files: its grid config and its agent config), and where ``deploy`` may
take a package from (HTC-Grid reads it from the bucket ``S3_LAMBDA_HTCGRID_BUCKET_NAME``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from htcgrid.cli.options import env
from htcgrid.compat import grid_config
from htcgrid.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])
VALUE_WIDTH = 40


def _load(ctx: click.Context, param: click.Parameter, value: Path | None) -> dict[str, Any]:
    return grid_config.load(value) if value is not None else {}


def grid_config_option(fn: F) -> F:
    """``--config FILE``: an HTC-Grid config, loaded into the parameter ``grid_config``."""
    return click.option(
        "--config",
        "grid_config",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        callback=_load,
        envvar=env("CONFIG"),
        show_envvar=True,
        help="HTC-Grid config file: its task_ttl_*, agent_task_visibility_timeout_sec and "
        "region keys apply (flags win); see `htcgrid config check`.",
    )(fn)


def with_config(config: Mapping[str, Any], given: Mapping[str, float | None]) -> dict[str, Any]:
    """Settings overrides: the config file's, then the flags given (which win)."""
    flags = {name: value for name, value in given.items() if value is not None}
    return {**grid_config.settings_overrides(config), **flags}


def export_region(config: Mapping[str, Any]) -> None:
    """Hand the config's ``region`` to the agents this process starts (unless set already)."""
    region = grid_config.region(config)
    if region:
        os.environ.setdefault(env("REGION"), region)


def package_source(ctx: click.Context, param: click.Parameter, value: str) -> Path | str:
    """The package argument of ``deploy``: an existing zip or folder, or an ``s3://`` URL
    (kept as text: ``deploy`` reads it through the grid's S3 data plane)."""
    if value.startswith("s3://"):
        return value
    path = Path(value)
    if not path.exists():
        raise click.BadParameter(f"{value} does not exist", ctx, param)
    return path


@click.group()
def config() -> None:
    """HTC-Grid config files."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """List which keys of an HTC-Grid config FILE htcgrid uses, and which it ignores, why."""
    loaded = grid_config.load(file)
    used = {k: v for k, v in loaded.items() if grid_config.explain(k)[0]}
    ignored = {k: v for k, v in loaded.items() if k not in used}
    width = max((len(k) for k in loaded), default=0)
    for title, keys in (("used", used), ("ignored", ignored)):
        click.echo(f"{title} ({len(keys)}):")
        for key, value in keys.items():
            shown = _short(value) if title == "used" else ""
            click.echo(f"  {key:<{width}}  {shown}{grid_config.explain(key)[1]}")
    problems = grid_config.check(loaded)
    if problems:
        raise ConfigurationError(f"{file}: " + "; ".join(problems))


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if len(text) > VALUE_WIDTH:
        text = text[: VALUE_WIDTH - 1] + "…"
    return f"= {text}  → "


COMMANDS = [config]
