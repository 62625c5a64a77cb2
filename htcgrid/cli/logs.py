"""``htcgrid logs TASK_ID [--follow]``: a task's captured stdout and stderr."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from htcgrid.cli.options import _client, env, token_option, url_option
from htcgrid.cli.output import json_option, to_json
from htcgrid.models import TaskState

MIN_INTERVAL_SECONDS = 0.2
MAX_INTERVAL_SECONDS = 60.0


def _terminal(task: dict[str, Any]) -> bool:
    return TaskState(task["state"]).terminal


def follow(
    fetch: Callable[[], dict[str, Any]],
    write: Callable[[str], None],
    wait: Callable[[float], None],
    interval_seconds: float,
) -> dict[str, Any]:
    """Write the task's log, then what each later fetch adds, until the task is terminal;
    returns the last task fetched. A log that does not continue the one written (the next
    attempt's) is written whole after a line naming its attempt."""
    shown = ""
    while True:
        task = fetch()
        log = task.get("log") or ""
        header = f"--- attempt {task.get('attempts')} ---\n"
        new = log[len(shown) :] if log.startswith(shown) else header + log
        if new:
            write(new)
        shown = log
        if _terminal(task):
            return task
        wait(interval_seconds)


@click.command(short_help="Print a task's captured stdout and stderr.")
@click.argument("task_id")
@click.option(
    "--follow",
    "-f",
    "following",
    is_flag=True,
    envvar=env("FOLLOW"),
    show_envvar=True,
    help="Keep printing what is new until the task is finished, failed or cancelled.",
)
@click.option(
    "--interval-seconds",
    type=click.FloatRange(MIN_INTERVAL_SECONDS, MAX_INTERVAL_SECONDS),
    default=1.0,
    show_default=True,
    envvar=env("LOGS_INTERVAL_SECONDS"),
    show_envvar=True,
    help="With --follow: how often to ask the grid.",
)
@url_option()
@token_option
@json_option
def logs(
    task_id: str,
    following: bool,
    interval_seconds: float,
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Print what TASK_ID's handler wrote to stdout and stderr, as the grid kept it: up to
    the grid's log limit (of a longer log, its end, after a line saying how much was dropped).

    A log is recorded when an attempt ends, so --follow shows it at the end of each attempt
    (a retried task's next attempt brings its own log), and stops with a line on stderr once
    the task is finished, failed or cancelled. With --json: one object, or with --follow one
    line per new piece of log ({"task_id", "log"}) and a last one with the task's state."""

    def write(text: str) -> None:
        if as_json:
            click.echo(to_json({"task_id": task_id, "log": text}, indent=None))
        else:
            click.echo(text, nl=False)

    with _client(url, token, create=False) as grid:
        if following:
            task = follow(lambda: grid.task(task_id), write, time.sleep, interval_seconds)
        else:
            task = grid.task(task_id)
    end = {"task_id": task_id, "state": task["state"], "attempts": task.get("attempts")}
    if following and as_json:
        click.echo(to_json(end, indent=None))
    elif following:
        click.echo(f"--- task {task_id} {end['state']} (attempt {end['attempts']}) ---", err=True)
    elif as_json:
        click.echo(to_json({**end, "log": task.get("log") or ""}))
    else:
        click.echo(task.get("log") or "", nl=False)


COMMANDS = [logs]
