"""The ``htcgrid`` command. Every option can also be set by the ``HTCGRID_*`` variable shown
in ``--help``; only this module reads the environment."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from htcgrid import __version__
from htcgrid.errors import GridError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_API = "http://127.0.0.1:8080"
EXIT_HANDLER_ERROR = 3


def env(name: str) -> str:
    return f"HTCGRID_{name}"


def url_option(
    default: str | None = DEFAULT_API, help: str = "Grid API URL (or a backend URL)."
) -> Callable[[F], F]:
    return click.option(
        "--url", envvar=env("URL"), default=default, show_default=True, show_envvar=True, help=help
    )


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
        type=click.Path(file_okay=False),
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
        type=click.IntRange(1, 1024),
        envvar=env("SLOTS"),
        default=os.cpu_count() or 1,
        show_default="CPU count",
        show_envvar=True,
        help="Worker processes per agent.",
    )(fn)


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
    from htcgrid.limits import SecurityConfig

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    tls = (tls_cert, tls_key) if tls_cert and tls_key else None
    return SecurityConfig.from_env(os.environ, auth=not no_auth), tls


def _warn_if_exposed(host: str, tls: Any, no_auth: bool) -> None:
    from htcgrid.server import is_loopback

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

    return Settings.from_env(os.environ, **given)


def _client(url: str, token: str | None = None) -> Any:
    from htcgrid.client import connect

    return connect(url, token=token)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


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


# ---- running a grid ---------------------------------------------------------------------


@main.command()
@click.option(
    "--data-dir",
    envvar=env("DATA_DIR"),
    default=".htcgrid",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Where the task store and data plane live.",
)
@click.option(
    "--host", envvar=env("HOST"), default="127.0.0.1", show_default=True, show_envvar=True
)
@click.option(
    "--port",
    envvar=env("PORT"),
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    show_envvar=True,
    help="API port; 0 picks a free one.",
)
@click.option(
    "--agents",
    envvar=env("AGENTS"),
    type=click.IntRange(0, 256),
    default=1,
    show_default=True,
    show_envvar=True,
    help="Agent processes to run.",
)
@worker_options
@security_options
@settings_options
def up(
    data_dir: str,
    host: str,
    port: int,
    agents: int,
    slots: int,
    handler: str,
    paths: tuple[str, ...],
    no_auth: bool,
    tls_cert: str | None,
    tls_key: str | None,
    **given: float | None,
) -> None:
    """Run a whole grid here: API, TTL checker and agents, on SQLite and files.

    The first start creates user 'admin' and writes its password and an API key to
    admin-credentials.json in the data dir (readable by you only)."""
    from htcgrid.local import LocalGrid

    settings = _settings(**given)
    security, tls = _security(no_auth, tls_cert, tls_key)
    _warn_if_exposed(host, tls, no_auth)
    grid = LocalGrid(
        Path(data_dir), host, port, agents, slots, handler, list(paths), settings, security, tls
    )
    sys.exit(grid.run())


@main.command()
@url_option(default="sqlite://.htcgrid/grid.db", help="Task store URL.")
@click.option(
    "--data-url",
    envvar=env("DATA_URL"),
    default=None,
    show_envvar=True,
    help="Data plane URL (default: the task store URL).",
)
@click.option(
    "--host", envvar=env("HOST"), default="127.0.0.1", show_default=True, show_envvar=True
)
@click.option(
    "--port",
    envvar=env("PORT"),
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    show_envvar=True,
)
@security_options
@settings_options
def server(
    url: str,
    data_url: str | None,
    host: str,
    port: int,
    no_auth: bool,
    tls_cert: str | None,
    tls_key: str | None,
    **given: float | None,
) -> None:
    """Serve the API and run the TTL checker on any backend."""
    from htcgrid.server import APIServer, bind

    security, tls = _security(no_auth, tls_cert, tls_key)
    _warn_if_exposed(host, tls, no_auth)
    api = APIServer(url, data_url or url, _settings(**given), bind(host, port), security, tls)
    api.start()
    if api.auth is None:
        click.secho(f"htcgrid: WARNING: authentication is OFF at {api.url}", err=True, fg="red")
    elif not api.auth.has_users():
        click.echo(
            f"htcgrid: no users yet; add an admin with: htcgrid user add NAME --admin "
            f"--url {url} --data-url {data_url or url}",
            err=True,
        )
    click.echo(api.url)
    _wait_for_signal()
    api.stop()


@main.command()
@url_option(default="sqlite://.htcgrid/grid.db", help="Task store URL.")
@click.option(
    "--data-url",
    envvar=env("DATA_URL"),
    default=None,
    show_envvar=True,
    help="Data plane URL (default: the task store URL).",
)
@worker_options
@click.option(
    "--function",
    "functions",
    multiple=True,
    envvar=env("FUNCTION"),
    show_envvar=True,
    help="Serve only these functions (repeatable; default: all).",
)
@click.option(
    "--cache-dir",
    envvar=env("CACHE_DIR"),
    default=None,
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where deployed function packages are unpacked (default: a per-user temp folder).",
)
@click.option("--agent-id", envvar=env("AGENT_ID"), default=None, show_envvar=True)
@click.option("--parent-pid", type=int, default=None, hidden=True)
@settings_options
def agent(
    url: str,
    data_url: str | None,
    slots: int,
    handler: str,
    paths: tuple[str, ...],
    functions: tuple[str, ...],
    cache_dir: Path | None,
    agent_id: str | None,
    parent_pid: int | None,
    **given: float | None,
) -> None:
    """Claim and run tasks in worker processes."""
    from htcgrid.agent.agent import Agent, HandlerImportError
    from htcgrid.agent.worker import WorkerConfig
    from htcgrid.dataplane import open_data_plane
    from htcgrid.store import open_store

    settings = _settings(**given)
    worker = WorkerConfig(
        handler=handler,
        paths=tuple(str(Path(p).resolve()) for p in paths),
        log_limit_bytes=settings.log_limit_bytes,
    )
    data = open_data_plane(data_url or url)
    runner = Agent(
        open_store(url),
        data,
        settings,
        worker,
        slots,
        functions=list(functions) or None,
        agent_id=agent_id,
        packages=_package_cache(data, cache_dir, worker),
    )
    signals = {"count": 0}

    def on_signal(signum: int, frame: object) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(130)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    orphaned = (lambda: os.getppid() != parent_pid) if parent_pid else (lambda: False)
    try:
        runner.run(should_stop=orphaned)
    except HandlerImportError as exc:
        click.echo(f"htcgrid agent: {exc}", err=True)
        sys.exit(EXIT_HANDLER_ERROR)


def _package_cache(data: Any, cache_dir: Path | None, worker: Any) -> Any:
    import tempfile

    from htcgrid.agent.packages import PackageCache
    from htcgrid.functions import FunctionRegistry

    folder = cache_dir or Path(tempfile.gettempdir()) / f"htcgrid-packages-{os.getuid()}"
    return PackageCache(FunctionRegistry(data), folder.resolve(), worker)


def _wait_for_signal() -> None:
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1):
        pass


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


@main.command()
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


@main.command()
@click.argument("session_id")
@url_option()
@token_option
def status(session_id: str, url: str, token: str | None) -> None:
    """Show a session's progress: counts per state."""
    with _client(url, token) as grid:
        _print_json(grid.session(session_id).status())


@main.command("wait")
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
    with _client(url, token) as grid:
        _print_json(grid.session(session_id).wait(timeout, progress=True)["counts"])


@main.command()
@click.argument("session_id")
@url_option()
@token_option
def results(session_id: str, url: str, token: str | None) -> None:
    """Print a session's results as JSON lines, in order (waits for the session)."""
    with _client(url, token) as grid:
        _print_results(grid.session(session_id).results())


@main.command()
@click.argument("session_id")
@url_option()
@token_option
def cancel(session_id: str, url: str, token: str | None) -> None:
    """Cancel a session: pending tasks never run, running ones are stopped."""
    with _client(url, token) as grid:
        _print_json(grid.session(session_id).cancel())


@main.command()
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
    with _client(url, token) as grid:
        for s in grid.sessions(limit):
            counts = ", ".join(f"{n} {k}" for k, n in s["counts"].items() if n)
            click.echo(f"{s['session_id']}  {s['task_count']:>8} tasks  {counts}")


@main.command()
@click.argument("task_id")
@url_option()
@token_option
def task(task_id: str, url: str, token: str | None) -> None:
    """Show one task: payload, state, output or error, and its captured log."""
    with _client(url, token) as grid:
        _print_json(grid.task(task_id))


@main.group()
def db() -> None:
    """Task store administration."""


@db.command()
@url_option(default=None, help="Task store URL.")
def upgrade(url: str | None) -> None:
    """Create or migrate the task store's schema (PostgreSQL); other backends need nothing."""
    if not url:
        raise click.UsageError("--url (or HTCGRID_URL) is required")
    if url.startswith(("postgresql://", "postgres://")):
        from htcgrid.store.postgres_migrations import upgrade as pg_upgrade

        applied = pg_upgrade(url)
        click.echo(f"applied migrations: {applied}" if applied else "schema is up to date")
    else:
        click.echo("nothing to do for this backend")


# ---- worker functions -------------------------------------------------------------------


def function_url_options(fn: F) -> F:
    fn = click.option(
        "--data-url",
        envvar=env("DATA_URL"),
        default=None,
        show_envvar=True,
        help="Data plane URL (default: the --url backend).",
    )(fn)
    return url_option(default="sqlite://.htcgrid/grid.db", help="Backend URL of the grid.")(fn)


def _registry(url: str, data_url: str | None) -> Any:
    from htcgrid.dataplane import open_data_plane
    from htcgrid.functions import FunctionRegistry

    target = data_url or url
    if target.startswith(("http://", "https://")):
        raise click.UsageError("functions are deployed on a backend URL (e.g. sqlite://…)")
    return FunctionRegistry(open_data_plane(target))


@main.command()
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


@main.command()
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


@main.group()
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


def _add_user_commands() -> None:
    from htcgrid.cli_users import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_add_user_commands()

if __name__ == "__main__":
    main()
