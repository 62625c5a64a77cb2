"""``htcgrid deploy``, ``functions`` and ``function show|rollback|delete``: worker function
packages, through the API (``http(s)://`` URLs) or straight on a grid's backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from htcgrid.cli.config import package_source
from htcgrid.cli.options import (
    backend_options,
    env,
    token_option,
)
from htcgrid.cli.output import fields, functions_table, iso, json_option, to_json

# ---- worker functions -------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def function_url_options(fn: F) -> F:
    """--url (the grid's API or its task store), --data-url, --token."""
    fn = token_option(fn)
    return backend_options("The grid: its API (http://…) or its task store URL.")(fn)


def _functions(url: str, data_url: str | None, token: str | None) -> Any:
    from htcgrid.cli.function_admin import open_functions

    return open_functions(url, data_url, token)


@click.command()
@click.argument("name")
@click.argument("package", callback=package_source)
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
    package: Path | str,
    handler: str | None,
    runtime: str,
    timeout_seconds: float | None,
    memory_mb: int,
    config_file: Path | None,
    url: str,
    data_url: str | None,
    token: str | None,
) -> None:
    """Upload a zip (or a directory, zipped here, or an s3://bucket/key.zip already in S3
    when the grid's data plane is S3) as the next version of function NAME."""
    from htcgrid.compat import grid_config
    from htcgrid.functions import handler_from_config, read_package

    if handler is None and config_file is not None:
        handler = handler_from_config(grid_config.load(config_file))
    if handler is None and runtime == "python":
        raise click.UsageError("--handler (or a --config naming one) is required")
    admin = _functions(url, data_url, token)
    try:
        if isinstance(package, str):  # s3://bucket/key.zip, already in S3
            from htcgrid.cli.aws import package_from_s3

            content = package_from_s3(package, admin, data_url)
        else:
            content = read_package(package)
        deployed = admin.deploy(name, content, handler or "", runtime, timeout_seconds, memory_mb)
    finally:
        admin.close()
    click.echo(f"{deployed['name']} v{deployed['version']} sha256:{deployed['sha256']}")


@click.command(short_help="List deployed functions and their versions.")
@function_url_options
@json_option
def functions(url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """List deployed functions, their versions and handlers (* marks the current one)."""
    admin = _functions(url, data_url, token)
    try:
        records = admin.functions()
    finally:
        admin.close()
    if as_json:
        click.echo(to_json(records))
    elif records:
        click.echo(functions_table(records))


@click.group()
def function() -> None:
    """Manage one deployed function."""


@function.command()
@click.argument("name")
@click.argument("version", type=int)
@function_url_options
def rollback(name: str, version: int, url: str, data_url: str | None, token: str | None) -> None:
    """Make VERSION of function NAME the current one again."""
    admin = _functions(url, data_url, token)
    try:
        chosen = admin.rollback(name, version)
    finally:
        admin.close()
    click.echo(f"{chosen['name']} v{chosen['version']} is current")


@function.command()
@click.argument("name")
@function_url_options
@json_option
def show(name: str, url: str, data_url: str | None, token: str | None, as_json: bool) -> None:
    """Show function NAME: its versions (handler, sha256, size) and the current one."""
    admin = _functions(url, data_url, token)
    try:
        record = admin.show(name)
    finally:
        admin.close()
    if as_json:
        click.echo(to_json(record))
        return
    current = next(v for v in record["versions"] if v["version"] == record["current"])
    timeout = current["timeout_seconds"]
    click.echo(
        fields(
            [
                ("function", record["name"]),
                ("current", f"v{current['version']} ({current['runtime']}) {current['handler']}"),
                ("sha256", current["sha256"]),
                ("size", f"{current['size_bytes']:,} bytes"),
                ("timeout", f"{timeout} s" if timeout else "-"),
                ("deployed", iso(current["created_at"])),
            ]
        )
    )
    click.echo(functions_table([record]))


@function.command()
@click.argument("name")
@function_url_options
def delete(name: str, url: str, data_url: str | None, token: str | None) -> None:
    """Delete function NAME and every version of it; its sessions are then refused."""
    admin = _functions(url, data_url, token)
    try:
        admin.delete(name)
    finally:
        admin.close()
    click.echo(f"{name} deleted")


COMMANDS = [deploy, functions, function]
