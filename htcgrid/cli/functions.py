"""``htcgrid deploy``, ``functions`` and ``function rollback``: worker function packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from htcgrid.cli.options import (
    backend_options,
    env,
)

# ---- worker functions -------------------------------------------------------------------


function_url_options = backend_options("Backend URL of the grid.")


def _registry(url: str, data_url: str | None) -> Any:
    from htcgrid.dataplane import open_data_plane
    from htcgrid.functions import FunctionRegistry

    target = data_url or url
    if target.startswith(("http://", "https://")):
        raise click.UsageError("functions are deployed on a backend URL (e.g. sqlite://…)")
    return FunctionRegistry(open_data_plane(target))


@click.command()
@click.argument("name")
@click.argument("package", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--handler",
    default=None,
    envvar=env("HANDLER"),
    show_envvar=True,
    help="module.function (or the bootstrap's _HANDLER).",
)
@click.option(
    "--runtime",
    type=click.Choice(["python", "provided"]),
    default="python",
    envvar=env("RUNTIME"),
    show_envvar=True,
)
@click.option(
    "--timeout-seconds",
    type=float,
    default=None,
    envvar=env("TIMEOUT_SECONDS"),
    show_envvar=True,
    help="Per-task time limit of this version (a session's shorter one wins).",
)
@click.option(
    "--memory-mb",
    type=int,
    default=0,
    envvar=env("MEMORY_MB"),
    show_envvar=True,
    help="Reported to the handler's context.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    envvar=env("CONFIG"),
    show_envvar=True,
    help="HTC-Grid grid config: agent_configuration.lambda.lambda_handler_* give the handler.",
)
@function_url_options
def deploy(
    name: str,
    package: Path,
    handler: str | None,
    runtime: str,
    timeout_seconds: float | None,
    memory_mb: int,
    config_file: Path | None,
    url: str,
    data_url: str | None,
) -> None:
    """Upload a zip (or a directory, zipped here) as the next version of function NAME."""
    from htcgrid.functions import handler_from_config, read_package

    if handler is None and config_file is not None:
        handler = handler_from_config(json.loads(config_file.read_text()))
    if handler is None and runtime == "python":
        raise click.UsageError("--handler (or a --config naming one) is required")
    deployed = _registry(url, data_url).deploy(
        name, read_package(package), handler or "", runtime, timeout_seconds, memory_mb
    )
    click.echo(f"{deployed.name} v{deployed.version} sha256:{deployed.sha256}")


@click.command()
@function_url_options
def functions(url: str, data_url: str | None) -> None:
    """List deployed functions, their versions and handlers (* marks the current one)."""
    registry = _registry(url, data_url)
    for name in registry.names():
        record = registry.record(name)
        for v in record.versions:
            mark = "*" if v.version == record.current else " "
            click.echo(
                f"{mark} {name:<20} v{v.version:<4} {v.runtime:<8} {v.handler:<32} {v.sha256[:12]}"
            )


@click.group()
def function() -> None:
    """Manage one deployed function."""


@function.command()
@click.argument("name")
@click.argument("version", type=int)
@function_url_options
def rollback(name: str, version: int, url: str, data_url: str | None) -> None:
    """Make VERSION of function NAME the current one again."""
    chosen = _registry(url, data_url).rollback(name, version)
    click.echo(f"{chosen.name} v{chosen.version} is current")


COMMANDS = [deploy, functions, function]
