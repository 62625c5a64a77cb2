"""The ``htcgrid`` command. Every option can also be set by the ``HTCGRID_*`` variable shown
in ``--help``; only this package reads the environment.

    options.py    options and helpers the commands share
    run.py        up, server, agent, db: running a grid
    sessions.py   submit, status, wait, results, cancel, sessions, task: using one
    functions.py  deploy, functions, function show/rollback/delete: worker function packages
    agents.py     agents: who serves a grid
    users.py      user, key, login, logout: who may use it
    config.py     config check: HTC-Grid config files, and their --config option
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from htcgrid import __version__
from htcgrid.cli import agents, config, functions, run, sessions, users
from htcgrid.cli.options import env
from htcgrid.errors import GridError


class GridGroup(click.Group):
    """Turns htcgrid's errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GridError as exc:
            click.echo(f"htcgrid: {exc}", err=True)
            sys.exit(1)
        except TimeoutError as exc:
            click.echo(f"htcgrid: {exc}", err=True)
            sys.exit(124)


@click.group(cls=GridGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="htcgrid")
@click.option(
    "--log-level", envvar=env("LOG_LEVEL"), default="warning", show_envvar=True, show_default=True
)
def main(log_level: str) -> None:
    """htcgrid: a high-throughput compute grid for Lambda-style Python tasks.

    Start a grid on this machine with `htcgrid up`, then submit work with
    `htcgrid submit tasks.json --wait` or from Python with `htcgrid.connect(url)`.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


for _module in (run, sessions, functions, users, config, agents):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
