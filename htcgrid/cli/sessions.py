"""``htcgrid submit``, ``status``, ``wait``, ``results``, ``cancel``, ``sessions``, ``task``: using a grid.

``submit --wait``, ``wait`` and ``results`` exit with ``EXIT_TASK_FAILED`` when some task failed
and ``EXIT_TASK_CANCELLED`` when none failed but some was cancelled, so scripts can tell.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from htcgrid.cli.options import (
    EXIT_TASK_CANCELLED,
    EXIT_TASK_FAILED,
    _client,
    env,
    token_option,
    url_option,
)
from htcgrid.cli.output import (
    counts_text,
    iso,
    json_option,
    results_table,
    session_text,
    table,
    task_text,
    to_json,
)
from htcgrid.cli.retention import seconds_of
from htcgrid.cli.tasks_file import DEPS_HINT, read_tasks
from htcgrid.models import MAX_ATTEMPTS


def outcome(counts: Mapping[str, int]) -> int:
    """The exit code for a finished session: 0, or why some task did not finish."""
    if counts.get("failed"):
        return EXIT_TASK_FAILED
    if counts.get("cancelled"):
        return EXIT_TASK_CANCELLED
    return 0


def _print_results(results: Sequence[Any], as_json: bool) -> None:
    """Print results and exit with the code they call for."""
    if as_json:
        for r in results:
            item = {
                "task_id": r.task_id,
                "state": r.state.value,
                "output": r.output,
                "error": r.error,
                "attempts": r.attempts,
                **({"cached": True} if r.cached else {}),
            }
            click.echo(to_json(item, indent=None))
    else:
        click.echo(results_table(results))
    counts: dict[str, int] = {}
    for r in results:
        counts[r.state.value] = counts.get(r.state.value, 0) + 1
    sys.exit(outcome(counts))


@click.command(short_help="Submit a session of tasks (a JSON list or JSON lines).")
@click.argument("source", default="-", metavar="[FILE]")
@url_option()
@token_option
@click.option(
    "--priority",
    type=click.IntRange(0, 9),
    default=0,
    show_default=True,
    envvar=env("PRIORITY"),
    show_envvar=True,
    help="0-9; higher runs first.",
)
@click.option(
    "--function",
    default="default",
    show_default=True,
    envvar=env("FUNCTION"),
    show_envvar=True,
    help="The deployed function that runs the tasks ('default': the agents' --handler).",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, MAX_ATTEMPTS),
    default=None,
    show_default="the grid's setting",
    envvar=env("MAX_ATTEMPTS"),
    show_envvar=True,
    help="Runs of a task before it fails for good (after lost agents or timeouts).",
)
@click.option(
    "--timeout-seconds",
    type=float,
    default=None,
    show_default="the grid's setting",
    envvar=env("TIMEOUT_SECONDS"),
    show_envvar=True,
    help="Time limit of one run of a task.",
)
@click.option(
    "--poison-after",
    type=click.IntRange(1, MAX_ATTEMPTS),
    default=None,
    show_default="the agents' setting",
    envvar=env("POISON_AFTER"),
    show_envvar=True,
    help="Worker deaths (crash, signal, memory limit) after which a task fails as poison.",
)
@click.option(
    "--retention",
    default=None,
    show_default="the server's",
    envvar=env("RETENTION"),
    show_envvar=True,
    help="How long the grid keeps the session after it ends: 7d, 12h, 30m, 90s.",
)
@click.option(
    "--cache",
    is_flag=False,
    flag_value="on",
    default=None,
    metavar="[TTL]",
    envvar=env("CACHE"),
    show_envvar=True,
    help="Memoization: answer a task from an earlier finished task of yours with the same "
    "function version and input, without running it; with TTL (7d, 12h, 30m, 90s) only from "
    "an answer at most that old.",
)
@click.option(
    "--deps",
    "deps_file",
    default=None,
    metavar="FILE",
    envvar=env("DEPS"),
    show_envvar=True,
    help="A task graph: FILE holds one entry per task (a JSON list, or JSON lines), the "
    "indexes or task ids it depends on, or null; a task runs once they finished, with their "
    "outputs as context.inputs.",
)
@click.option(
    "--session-id",
    default=None,
    envvar=env("SESSION_ID"),
    show_envvar=True,
    help="Your own id for the session; submitting it again with the same tasks is a no-op.",
)
@click.option(
    "--wait",
    "wait_",
    is_flag=True,
    envvar=env("WAIT"),
    show_envvar=True,
    help="Wait for the session and print its results (exit 4 if a task failed, 5 if cancelled).",
)
@json_option
def submit(
    source: str,
    url: str,
    token: str | None,
    priority: int,
    function: str,
    max_attempts: int | None,
    timeout_seconds: float | None,
    poison_after: int | None,
    retention: str | None,
    cache: str | None,
    deps_file: str | None,
    session_id: str | None,
    wait_: bool,
    as_json: bool,
) -> None:
    """Submit a session: FILE is a JSON list or JSON lines, one task each; without FILE (or
    with '-') the tasks are read from stdin. Prints the session id, or with --wait the results."""
    tasks = read_tasks(source)
    deps = None if deps_file is None else read_tasks(deps_file, DEPS_HINT)
    with _client(url, token) as grid:
        session = grid.submit(
            tasks,
            priority=priority,
            function=function,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            session_id=session_id,
            retention_seconds=None if retention is None else seconds_of(retention),
            poison_after=poison_after,
            cache=False if cache is None else True if cache == "on" else seconds_of(cache),
            deps=deps,
        )
        if not wait_:
            click.echo(to_json({"session_id": session.id}) if as_json else session.id)
            return
        click.echo(f"session {session.id}: {session.task_count} task(s)", err=True)
        session.wait(progress=True)
        _print_results(session.results(), as_json)


@click.command(short_help="Show a session's progress.")
@click.argument("session_id")
@url_option()
@token_option
@json_option
def status(session_id: str, url: str, token: str | None, as_json: bool) -> None:
    """Show a session's progress: tasks per state, function, owner, when it was created."""
    with _client(url, token, create=False) as grid:
        found = grid.session(session_id).status()
    click.echo(to_json(found) if as_json else session_text(found))


@click.command("wait", short_help="Wait until a session is complete.")
@click.argument("session_id")
@url_option()
@token_option
@click.option(
    "--timeout",
    type=float,
    default=None,
    envvar=env("TIMEOUT"),
    show_envvar=True,
    help="Give up after this many seconds (exit code 124).",
)
@json_option
def wait_cmd(
    session_id: str, url: str, token: str | None, timeout: float | None, as_json: bool
) -> None:
    """Wait until every task of a session is finished, failed or cancelled; exit 4 if a task
    failed, 5 if one was cancelled, 124 on --timeout."""
    with _client(url, token, create=False) as grid:
        final = grid.session(session_id).wait(timeout, progress=True)
    click.echo(to_json(final) if as_json else session_text(final))
    sys.exit(outcome(final["counts"]))


@click.command(short_help="Print a session's results, in order.")
@click.argument("session_id")
@url_option()
@token_option
@json_option
def results(session_id: str, url: str, token: str | None, as_json: bool) -> None:
    """Print a session's results in order, waiting for the session (--json: JSON lines); exit 4
    if a task failed, 5 if one was cancelled."""
    with _client(url, token, create=False) as grid:
        _print_results(grid.session(session_id).results(), as_json)


@click.command(short_help="Cancel a session, or some of its tasks.")
@click.argument("session_id")
@click.option(
    "--task",
    "tasks",
    multiple=True,
    metavar="ID|INDEX",
    envvar=env("CANCEL_TASKS"),
    help="Cancel only this task (a task id or an index); repeat for more (the variable takes "
    "several, separated by spaces). Default: every task.",
)
@url_option()
@token_option
@json_option
def cancel(
    session_id: str, tasks: tuple[str, ...], url: str, token: str | None, as_json: bool
) -> None:
    """Cancel a session: pending tasks never run, running ones are stopped. With --task, only
    those tasks; the rest of the session goes on."""
    with _client(url, token, create=False) as grid:
        done = grid.session(session_id).cancel(list(tasks) if tasks else None)
    if as_json:
        click.echo(to_json(done))
    else:
        click.echo(
            f"cancelled {done['total_cancelled_tasks']} task(s) of {session_id} "
            f"({done['cancelled_pending']} pending, {done['cancelled_processing']} running)"
        )


@click.command(short_help="List sessions, newest first.")
@url_option()
@token_option
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    envvar=env("LIMIT"),
    show_envvar=True,
    help="Show at most this many sessions.",
)
@json_option
def sessions(url: str, token: str | None, limit: int, as_json: bool) -> None:
    """List sessions, newest first: size, progress, function, owner, creation time."""
    with _client(url, token, create=False) as grid:
        found = grid.sessions(limit)
    if as_json:
        click.echo(to_json(found))
        return
    rows = [
        [
            s["session_id"],
            s["task_count"],
            counts_text(s["counts"]),
            s.get("function", "-"),
            s.get("owner") or "-",
            iso(s.get("created_at")),
        ]
        for s in found
    ]
    click.echo(table(["session", "tasks", "progress", "function", "owner", "created"], rows))


@click.command(short_help="Show one task, its error and its log.")
@click.argument("task_id")
@url_option()
@token_option
@json_option
def task(task_id: str, url: str, token: str | None, as_json: bool) -> None:
    """Show one task: payload, state, output or error with its traceback, and its log."""
    with _client(url, token, create=False) as grid:
        found = grid.task(task_id)
    click.echo(to_json(found) if as_json else task_text(found))


COMMANDS = [submit, status, wait_cmd, results, cancel, sessions, task]
