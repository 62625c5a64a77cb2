"""The ``htcgrid`` command. Every option can also be set by the ``HTCGRID_*`` variable shown
in ``--help``; only this package reads the environment.

    options.py    options and helpers the commands share, exit codes
    output.py     tables, times and --json: how read commands print
    run.py        up, server, agent, db: running a grid
    sessions.py   submit, status, wait, results, cancel, sessions, task: using one
    logs.py       logs: a task's captured stdout and stderr
    functions.py  deploy, functions, function show/rollback/delete: worker function packages
    agents.py     agents: who serves a grid
    users.py      user, key, login, logout: who may use it
    config.py     config check: HTC-Grid config files, and their --config option
    aws.py        aws create/destroy: a grid's DynamoDB tables, SQS queues and S3 bucket
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Any, NoReturn

import click

from htcgrid import __version__
from htcgrid.cli import (
    agents,
    aws,
    config,
    functions,
    logs,
    retention,
    run,
    runtimes,
    sessions,
    users,
)
from htcgrid.cli.options import EXIT_ERROR, EXIT_TIMEOUT, FullHelpGroup, env
from htcgrid.errors import GridError

EPILOG = """Exit codes: 0 success; 1 an error (one line on stderr says what to do); 2 a usage
error; 3 an agent cannot load its handler; 4 some task failed; 5 some task was cancelled (none
failed); 124 --timeout passed. --debug (or HTCGRID_DEBUG=1) shows the traceback of an error."""

PASS_THROUGH = (click.ClickException, click.exceptions.Abort, click.exceptions.Exit)


def explain(exc: BaseException) -> str:
    """One line for an error a user can cause, saying what went wrong and what to do."""
    if isinstance(exc, GridError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or str(exc)
        hint = {
            errno.EACCES: "check its permissions or choose another path",
            errno.EROFS: "the file system is read-only; choose another path",
            errno.ENOENT: "check the path",
            errno.EISDIR: "give a file, not a directory",
            errno.ENOSPC: "free some disk space",
        }.get(exc.errno or 0)
        return f"{where}{reason}" + (f"; {hint}" if hint else "")
    if isinstance(exc, RecursionError):
        return "input nested too deeply; flatten it"
    if isinstance(exc, UnicodeError):
        return f"text is not valid UTF-8 ({exc}); re-encode it as UTF-8"
    return (
        f"unexpected {type(exc).__name__}: {exc} "
        "(a bug in htcgrid: rerun with --debug and report the traceback)"
    )


class GridGroup(FullHelpGroup):
    """Turns every error a user can cause into one line on stderr and a non-zero exit code;
    ``--debug`` lets the exception (and its traceback) through instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            misuse(ctx, exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            misuse(ctx, exc)
        except PASS_THROUGH:
            raise
        except TimeoutError as exc:
            fail(ctx, exc, EXIT_TIMEOUT)
        except Exception as exc:
            fail(ctx, exc, EXIT_ERROR)


def misuse(ctx: click.Context, exc: click.UsageError) -> NoReturn:
    """A usage error as one line, naming the help to read (exit code 2)."""
    if ctx.params.get("debug"):
        raise exc
    where = (exc.ctx or ctx).command_path
    message = " ".join(exc.format_message().split())
    click.echo(f"htcgrid: {message} (see `{where} --help`)", err=True)
    sys.exit(exc.exit_code)


def fail(ctx: click.Context, exc: Exception, code: int) -> NoReturn:
    if ctx.params.get("debug"):
        raise exc
    message = " ".join(explain(exc).split())  # one line, whatever the message holds
    click.echo(f"htcgrid: {message}", err=True)
    sys.exit(code)


@click.group(cls=GridGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="htcgrid")
@click.option(
    "--log-level", envvar=env("LOG_LEVEL"), default="warning", show_envvar=True, show_default=True
)
@click.option(
    "--debug",
    is_flag=True,
    envvar=env("DEBUG"),
    show_envvar=True,
    help="Show the full traceback of an error instead of one line.",
)
def main(log_level: str, debug: bool) -> None:
    """htcgrid: a high-throughput compute grid for Lambda-style Python tasks.

    Start a grid on this machine with `htcgrid up`, then submit work with
    `htcgrid submit tasks.json --wait` or from Python with `htcgrid.connect(url)`.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )


for _module in (run, sessions, retention, logs, functions, users, config, agents, runtimes, aws):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
