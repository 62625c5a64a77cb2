"""``htcgrid submit``, ``status``, ``wait``, ``results``, ``cancel``, ``sessions``, ``task``: using a grid."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from htcgrid.cli.options import (
    _client,
    _print_json,
    env,
    token_option,
    url_option,
)

# ---- using a grid -----------------------------------------------------------------------


def _read_tasks(source: str) -> list[Any]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    stripped = text.strip()
    if not stripped:
        raise click.UsageError("no tasks given")
    if stripped.startswith("["):
        try:
            tasks = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"{source}: not valid JSON: {exc}") from None
        return list(tasks)
    tasks = []
    for number, line in enumerate(stripped.splitlines(), 1):
        if line.strip():
            try:
                tasks.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise click.UsageError(f"{source}:{number}: not valid JSON: {exc}") from None
    return tasks


@click.command()
@click.argument("source", default="-")
@url_option()
@token_option
@click.option(
    "--priority", type=click.IntRange(0, 9), default=0, envvar=env("PRIORITY"), show_envvar=True
)
@click.option("--function", default="default", envvar=env("FUNCTION"), show_envvar=True)
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    default=6,
    envvar=env("MAX_ATTEMPTS"),
    show_envvar=True,
)
@click.option(
    "--timeout-seconds", type=float, default=3600, envvar=env("TIMEOUT_SECONDS"), show_envvar=True
)
@click.option("--session-id", default=None, envvar=env("SESSION_ID"), show_envvar=True)
@click.option(
    "--wait",
    "wait_",
    is_flag=True,
    envvar=env("WAIT"),
    show_envvar=True,
    help="Wait for the session and print its results as JSON lines.",
)
def submit(
    source: str,
    url: str,
    token: str | None,
    priority: int,
    function: str,
    max_attempts: int,
    timeout_seconds: float,
    session_id: str | None,
    wait_: bool,
) -> None:
    """Submit a session: SOURCE is a JSON list or JSON lines, one task each ('-': stdin)."""
    tasks = _read_tasks(source)
    with _client(url, token) as grid:
        session = grid.submit(
            tasks,
            priority=priority,
            function=function,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            session_id=session_id,
        )
        if not wait_:
            click.echo(session.id)
            return
        click.echo(f"session {session.id}: {session.task_count} task(s)", err=True)
        session.wait(progress=True)
        _print_results(session.results())


def _print_results(results: Iterator[Any] | list[Any]) -> None:
    for r in results:
        click.echo(
            json.dumps(
                {
                    "task_id": r.task_id,
                    "state": r.state.value,
                    "output": r.output,
                    "error": r.error,
                    "attempts": r.attempts,
                }
            )
        )


@click.command()
@click.argument("session_id")
@url_option()
@token_option
def status(session_id: str, url: str, token: str | None) -> None:
    """Show a session's progress: counts per state."""
    with _client(url, token, create=False) as grid:
        _print_json(grid.session(session_id).status())


@click.command("wait")
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
def wait_cmd(session_id: str, url: str, token: str | None, timeout: float | None) -> None:
    """Wait until every task of a session is finished, failed or cancelled."""
    with _client(url, token, create=False) as grid:
        _print_json(grid.session(session_id).wait(timeout, progress=True)["counts"])


@click.command()
@click.argument("session_id")
@url_option()
@token_option
def results(session_id: str, url: str, token: str | None) -> None:
    """Print a session's results as JSON lines, in order (waits for the session)."""
    with _client(url, token, create=False) as grid:
        _print_results(grid.session(session_id).results())


@click.command()
@click.argument("session_id")
@url_option()
@token_option
def cancel(session_id: str, url: str, token: str | None) -> None:
    """Cancel a session: pending tasks never run, running ones are stopped."""
    with _client(url, token, create=False) as grid:
        _print_json(grid.session(session_id).cancel())


@click.command()
@url_option()
@token_option
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    envvar=env("LIMIT"),
    show_envvar=True,
)
def sessions(url: str, token: str | None, limit: int) -> None:
    """List sessions, newest first."""
    with _client(url, token, create=False) as grid:
        for s in grid.sessions(limit):
            counts = ", ".join(f"{n} {k}" for k, n in s["counts"].items() if n)
            click.echo(f"{s['session_id']}  {s['task_count']:>8} tasks  {counts}")


@click.command()
@click.argument("task_id")
@url_option()
@token_option
def task(task_id: str, url: str, token: str | None) -> None:
    """Show one task: payload, state, output or error, and its captured log."""
    with _client(url, token, create=False) as grid:
        _print_json(grid.task(task_id))


COMMANDS = [submit, status, wait_cmd, results, cancel, sessions, task]
