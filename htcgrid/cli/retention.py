"""``htcgrid retry``, ``delete``, ``purge`` and ``db vacuum``: a session after the fact.

``retry`` runs a session's failed tasks again, in place. The server purges sessions past their
retention by itself (``--retention-seconds``); the others do it now: one session, every session
older than a duration, and the one-off ``VACUUM`` that lets a SQLite file made before htcgrid
reclaimed space shrink after a purge.
"""

from __future__ import annotations

import re

import click

from htcgrid.cli.options import LOCAL_BACKEND, _client, env, token_option, url_option
from htcgrid.cli.output import json_option, to_json

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def seconds_of(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"90s"`` or ``"90"`` in seconds."""
    found = DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise click.BadParameter(f"{text!r} is not a duration like 7d, 12h, 30m or 90s")
    number, unit = found.groups()
    return float(number) * UNITS[unit or "s"]


@click.command(short_help="Run a session's failed tasks again, in place.")
@click.argument("session_id")
@click.option(
    "--failed",
    is_flag=True,
    envvar=env("RETRY_FAILED"),
    help="Failed tasks only: the default (finished and cancelled tasks never run again).",
)
@click.option(
    "--task",
    "tasks",
    multiple=True,
    envvar=env("RETRY_TASKS"),
    help="Only this task: its id or its index in the session (repeatable; the variable takes"
    " several, separated by spaces).",
)
@url_option()
@token_option
@json_option
def retry(
    session_id: str,
    failed: bool,
    tasks: tuple[str, ...],
    url: str,
    token: str | None,
    as_json: bool,
) -> None:
    """Send the session's failed tasks back to the queue, each with a fresh set of attempts:
    all of them, or those named with --task. Finished and cancelled tasks are left as they are.
    `htcgrid wait` and `htcgrid results` then show the new outcomes."""
    chosen = [int(t) if t.isdigit() else t for t in tasks] if tasks else None
    with _client(url, token, create=False) as grid:
        retried = grid.session(session_id).retry(chosen)
    answer = {"session_id": session_id, "retried": retried}
    click.echo(to_json(answer) if as_json else f"{session_id}: {len(retried)} task(s) retried")


@click.command(short_help="Delete a session, its tasks and data.")
@click.argument("session_id")
@url_option()
@token_option
def delete(session_id: str, url: str, token: str | None) -> None:
    """Delete a session: running tasks are cancelled, then its tasks, results and data are
    removed for good."""
    with _client(url, token, create=False) as grid:
        grid.delete(session_id)
    click.echo(f"deleted {session_id}")


@click.command(short_help="Delete every session that ended longer ago than a duration.")
@click.option(
    "--older-than",
    required=True,
    envvar=env("PURGE_OLDER_THAN"),
    show_envvar=True,
    help="How long ago the sessions ended: 7d, 12h, 30m, 90s.",
)
@url_option()
@token_option
@json_option
def purge(older_than: str, url: str, token: str | None, as_json: bool) -> None:
    """Delete every session that ended more than --older-than ago, with its tasks and data
    (admins only). Sessions still running are never touched."""
    with _client(url, token, create=False) as grid:
        purged = grid.purge(seconds_of(older_than))
    click.echo(to_json({"purged": purged}) if as_json else f"purged {len(purged)} session(s)")


@click.group(short_help="Maintain the grid's SQLite file.")
def db() -> None:
    """Maintain the task store's SQLite file."""


@db.command(short_help="Rewrite the SQLite file without its free space.")
@url_option(default=LOCAL_BACKEND, help="The task store's sqlite:// URL.")
def vacuum(url: str) -> None:
    """Rewrite the SQLite file without its free pages, and let every later purge shrink it
    at once. Needs free disk space about the size of the file; writers wait while it runs,
    so stop the grid or pick a quiet moment."""
    from htcgrid.store.sqlite import SQLiteTaskStore

    if not url.startswith("sqlite://"):
        raise click.UsageError("db vacuum is for a sqlite:// task store")
    store = SQLiteTaskStore(url, create=False)
    try:
        before = store.path.stat().st_size
        store.vacuum()
        after = store.path.stat().st_size
    finally:
        store.close()
    click.echo(f"{store.path}: {before // 1024} KiB -> {after // 1024} KiB")


COMMANDS = [retry, delete, purge, db]
