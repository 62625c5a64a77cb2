"""Options and helpers shared by the ``htcgrid`` commands; only the CLI reads the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from htcgrid.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_API = "http://127.0.0.1:8080"
LOCAL_BACKEND = "sqlite://.htcgrid/grid.db"  # where `htcgrid up` keeps its task store
EXIT_ERROR = 1  # one line on stderr says what went wrong and what to do
EXIT_HANDLER_ERROR = 3  # an agent cannot load its handler
EXIT_TASK_FAILED = 4  # submit --wait, wait, results: some task failed
EXIT_TASK_CANCELLED = 5  # ... none failed, but some task was cancelled
EXIT_TIMEOUT = 124  # --timeout passed first, as timeout(1) says it


class FullHelpGroup(click.Group):
    """A group whose command list shows each command's whole first sentence, wrapped, instead
    of cutting it off at the terminal's width."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def env(name: str) -> str:
    return f"HTCGRID_{name}"


def url_option(
    default: str | None = DEFAULT_API, help: str = "Grid API URL (or a backend URL)."
) -> Callable[[F], F]:
    return click.option(
        "--url", envvar=env("URL"), default=default, show_default=True, show_envvar=True, help=help
    )


def backend_options(url_help: str) -> Callable[[F], F]:
    """--url of a backend (default: ``htcgrid up``'s SQLite file) and --data-url beside it."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--data-url",
            envvar=env("DATA_URL"),
            default=None,
            show_envvar=True,
            help="Data plane URL (default: the --url backend).",
        )(fn)
        return url_option(default=LOCAL_BACKEND, help=url_help)(fn)

    return decorate


def listen_options(fn: F) -> F:
    """--host and --port of the API."""
    fn = click.option(
        "--port",
        envvar=env("PORT"),
        type=click.IntRange(0, 65535),
        default=8080,
        show_default=True,
        show_envvar=True,
        help="API port; 0 picks a free one.",
    )(fn)
    return click.option(
        "--host",
        envvar=env("HOST"),
        default="127.0.0.1",
        show_default=True,
        show_envvar=True,
        help="Address to listen on: loopback by default; elsewhere, also give --tls-cert/--tls-key.",
    )(fn)


def token_option(fn: F) -> F:
    return click.option(
        "--token",
        envvar=env("TOKEN"),
        default=None,
        show_envvar=True,
        help="Bearer token for the API.",
    )(fn)


def settings_options(fn: F) -> F:
    for name, help_text in reversed(
        [
            ("heartbeat-seconds", "How often agents extend their leases."),
            ("lease-seconds", "How long a lease lasts without a heartbeat."),
            ("grace-seconds", "How long a stopping agent may finish running tasks."),
            ("max-payload-mb", "Largest payload or result of one task, in MiB [default: 256]."),
            (
                "retention-seconds",
                "How long a session is kept after it ends; the server then purges it "
                "[default: 604800, 7 days].",
            ),
        ]
    ):
        fn = click.option(
            f"--{name}",
            type=float,
            default=None,
            envvar=env(name.replace("-", "_").upper()),
            show_envvar=True,
            help=help_text,
        )(fn)
    return fn


def worker_options(fn: F) -> F:
    fn = click.option(
        "--path",
        "paths",
        multiple=True,
        envvar=env("PATH"),
        show_envvar=True,
        type=click.Path(file_okay=False, exists=True),
        help="Folder added to the worker's import path "
        "(repeatable; ':'-separated in the variable).",
    )(fn)
    fn = click.option(
        "--handler",
        envvar=env("HANDLER"),
        default="htcgrid.handlers.echo",
        show_default=True,
        show_envvar=True,
        help="The worker function, as module.function or module:function.",
    )(fn)
    return click.option(
        "--slots",
        metavar="N|MIN:MAX",
        callback=_slot_range,
        envvar=env("SLOTS"),
        default=str(os.cpu_count() or 1),
        show_default="CPU count",
        show_envvar=True,
        help="Worker processes per agent: N, or MIN:MAX to follow the backlog "
        "(idle workers are retired; a running task is never interrupted).",
    )(fn)


def _slot_range(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """N, or MIN:MAX, as (MIN, MAX) worker processes per agent."""
    from htcgrid.scaling import parse_range

    try:
        low, high = parse_range(str(value))
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if not 1 <= high <= 1024:
        raise click.BadParameter(f"between 1 and 1024 slots, not {high}", ctx, param)
    return low, high


def security_options(fn: F) -> F:
    fn = click.option(
        "--tls-key",
        envvar=env("TLS_KEY"),
        default=None,
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True),
        help="Private key of --tls-cert.",
    )(fn)
    fn = click.option(
        "--tls-cert",
        envvar=env("TLS_CERT"),
        default=None,
        show_envvar=True,
        type=click.Path(dir_okay=False, exists=True),
        help="Serve HTTPS with this certificate (PEM; needs --tls-key).",
    )(fn)
    return click.option(
        "--no-auth",
        is_flag=True,
        envvar=env("NO_AUTH"),
        show_envvar=True,
        help="Let anyone in as admin, without a token. Refused unless bound to loopback.",
    )(fn)


def _security(no_auth: bool, tls_cert: str | None, tls_key: str | None) -> Any:
    from htcgrid.settings import SecurityConfig

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = (tls_cert, tls_key) if tls_cert and tls_key else None
    return SecurityConfig.from_env(os.environ, auth=not no_auth), tls


def _warn_if_exposed(host: str, tls: Any, no_auth: bool) -> None:
    from htcgrid.api.server import is_loopback

    if no_auth and not is_loopback(host):
        raise click.UsageError(
            f"--no-auth is only for loopback addresses (127.0.0.1, ::1), not {host}"
        )
    if not is_loopback(host) and tls is None:
        click.secho(
            f"htcgrid: WARNING: serving plain HTTP on {host}: passwords and tokens cross the "
            "network unencrypted. Use --tls-cert/--tls-key, or a TLS proxy in front.",
            err=True,
            fg="yellow",
        )


def _settings(**given: float | None) -> Any:
    from htcgrid.settings import Settings

    max_payload_mb = given.pop("max_payload_mb", None)
    if max_payload_mb is not None:
        given["max_payload_bytes"] = int(max_payload_mb * 1024 * 1024)
    return Settings.from_env(os.environ, **given)


def _client(url: str, token: str | None = None, create: bool = True) -> Any:
    """A client; ``create`` False (read commands) refuses a backend URL naming no grid."""
    from htcgrid.client import connect

    return connect(url, token=token, create=create)
