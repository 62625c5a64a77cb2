"""``htcgrid up``, ``server``, ``agent`` and ``db``: running a grid."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from htcgrid.cli.config import export_region, grid_config_option, with_config
from htcgrid.cli.options import (
    _security,
    _settings,
    _warn_if_exposed,
    backend_options,
    env,
    listen_options,
    security_options,
    settings_options,
    url_option,
    worker_options,
)
from htcgrid.errors import ConfigurationError
from htcgrid.scaling import (
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_TARGET_BACKLOG,
    ScalingPolicy,
    parse_range,
)

# ---- running a grid ---------------------------------------------------------------------

MAX_LOCAL_AGENTS = 256


def _agent_range(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """N, or MIN:MAX, as (MIN, MAX) bounds of ``htcgrid up``'s agents."""
    try:
        low, high = parse_range(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if high > MAX_LOCAL_AGENTS:
        raise click.BadParameter(f"at most {MAX_LOCAL_AGENTS} agents, not {high}", ctx, param)
    return low, high


def scaling_options(fn: Any) -> Any:
    """--target-backlog and --cooldown-seconds: how ``up --agents MIN:MAX`` and
    ``agent --slots MIN:MAX`` follow the backlog."""
    fn = click.option(
        "--cooldown-seconds",
        envvar=env("COOLDOWN_SECONDS"),
        type=click.FloatRange(min=0),
        default=DEFAULT_COOLDOWN_SECONDS,
        show_default=True,
        show_envvar=True,
        help="With MIN:MAX: how long after a change before an agent or a slot is retired.",
    )(fn)
    return click.option(
        "--target-backlog",
        envvar=env("TARGET_BACKLOG"),
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_TARGET_BACKLOG,
        show_default=True,
        show_envvar=True,
        help="With MIN:MAX: pending tasks per slot that call for one more agent or slot "
        "(HTC-Grid's htc_agent_target_value).",
    )(fn)


@click.command()
@click.option(
    "--data-dir",
    envvar=env("DATA_DIR"),
    default=".htcgrid",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Where the task store and data plane live.",
)
@listen_options
@click.option(
    "--agents",
    envvar=env("AGENTS"),
    metavar="N|MIN:MAX",
    callback=_agent_range,
    default="1",
    show_default=True,
    show_envvar=True,
    help="Agent processes to run: N, or MIN:MAX to scale with the backlog "
    "(scale-in drains agents: no running task is interrupted).",
)
@scaling_options
@worker_options
@security_options
@grid_config_option
@settings_options
def up(
    data_dir: str,
    host: str,
    port: int,
    agents: tuple[int, int],
    target_backlog: float,
    cooldown_seconds: float,
    slots: tuple[int, int],
    handler: str,
    paths: tuple[str, ...],
    no_auth: bool,
    tls_cert: str | None,
    tls_key: str | None,
    grid_config: dict[str, Any],
    **given: float | None,
) -> None:
    """Run a whole grid here: API, TTL checker and agents, on SQLite and files.

    The first start creates user 'admin' and writes its password and an API key to
    admin-credentials.json in the data dir (readable by you only)."""
    from htcgrid.cli.up import LocalGrid

    settings = _settings(**with_config(grid_config, given))
    export_region(grid_config)
    security, tls = _security(no_auth, tls_cert, tls_key)
    _warn_if_exposed(host, tls, no_auth)
    grid = LocalGrid(
        Path(data_dir),
        host,
        port,
        agents,
        slots,
        handler,
        list(paths),
        settings,
        security,
        tls,
        target_backlog=target_backlog,
        cooldown_seconds=cooldown_seconds,
    )
    sys.exit(grid.run())


@click.command()
@backend_options("Task store URL.")
@listen_options
@security_options
@grid_config_option
@settings_options
def server(
    url: str,
    data_url: str | None,
    host: str,
    port: int,
    no_auth: bool,
    tls_cert: str | None,
    tls_key: str | None,
    grid_config: dict[str, Any],
    **given: float | None,
) -> None:
    """Serve the API and run the TTL checker on any backend."""
    from htcgrid.api.server import APIServer, bind

    security, tls = _security(no_auth, tls_cert, tls_key)
    _warn_if_exposed(host, tls, no_auth)
    settings = _settings(**with_config(grid_config, given))
    api = APIServer(url, data_url, settings, bind(host, port), security, tls)
    api.start()
    if api.auth is None:
        click.secho(f"htcgrid: WARNING: authentication is OFF at {api.url}", err=True, fg="red")
    elif not api.auth.has_users():
        click.echo(
            f"htcgrid: no users yet; add an admin with: htcgrid user add NAME --admin --url {url}",
            err=True,
        )
    click.echo(api.url)
    _wait_for_signal()
    api.stop()


@click.command()
@backend_options("Task store URL.")
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
@click.option(
    "--region",
    envvar=env("REGION"),
    default=None,
    show_envvar=True,
    help="AWS_REGION of the workers and their functions' ARN (default: the --config "
    "file's region, else us-east-1).",
)
@click.option("--parent-pid", type=int, default=None, hidden=True)
@click.option(
    "--metrics-port",
    envvar=env("METRICS_PORT"),
    type=click.IntRange(0, 65535),
    default=None,
    show_envvar=True,
    help="Serve /metrics (Prometheus) and /healthz (JSON: status, running, held, slots) on "
    "this port (default: off).",
)
@click.option(
    "--metrics-host",
    envvar=env("METRICS_HOST"),
    default="127.0.0.1",
    show_default=True,
    show_envvar=True,
    help="Address of --metrics-port (0.0.0.0 for a scraper or probe on another machine).",
)
@click.option(
    "--worker-memory-mb",
    envvar=env("WORKER_MEMORY_MB"),
    type=click.IntRange(min=0),
    default=0,
    show_envvar=True,
    help="Resident memory a worker may use while it runs a task; over it the worker is "
    "replaced and the attempt ends as MemoryLimitExceeded (0: no limit; a function deployed "
    "with --memory-mb has its own).",
)
@scaling_options
@grid_config_option
@settings_options
def agent(
    url: str,
    data_url: str | None,
    slots: tuple[int, int],
    handler: str,
    paths: tuple[str, ...],
    functions: tuple[str, ...],
    cache_dir: Path | None,
    agent_id: str | None,
    region: str | None,
    parent_pid: int | None,
    metrics_port: int | None,
    metrics_host: str,
    worker_memory_mb: int,
    target_backlog: float,
    cooldown_seconds: float,
    grid_config: dict[str, Any],
    **given: float | None,
) -> None:
    """Claim and run tasks in worker processes."""
    from htcgrid.agent.agent import Agent
    from htcgrid.agent.lambda_env import DEFAULT_REGION
    from htcgrid.agent.metrics_http import AgentMetrics, MetricsServer
    from htcgrid.agent.supervise import ParentWatch
    from htcgrid.agent.worker import WorkerConfig
    from htcgrid.backends import open_grid
    from htcgrid.compat import grid_config as compat_config

    settings = _settings(**with_config(grid_config, given))
    worker = WorkerConfig(
        handler=handler,
        paths=tuple(str(Path(p).resolve()) for p in paths),
        log_limit_bytes=settings.log_limit_bytes,
        region=region or compat_config.region(grid_config) or DEFAULT_REGION,
    )
    store, data = open_grid(url, data_url, record=True)
    metrics = AgentMetrics()
    min_slots, max_slots = slots
    autoscale = None
    if min_slots < max_slots:
        autoscale = ScalingPolicy(min_slots, max_slots, target_backlog, 1, cooldown_seconds)
    runner = Agent(
        store,
        data,
        settings,
        worker,
        max_slots,
        functions=list(functions) or None,
        agent_id=agent_id,
        packages=_package_cache(data, cache_dir, worker),
        autoscale=autoscale,
        worker_memory_mb=worker_memory_mb,
        observer=metrics.observe if metrics_port is not None else None,
    )
    served = None
    if metrics_port is not None:
        served = MetricsServer(metrics, runner, metrics_host, metrics_port)
    signals = {"count": 0}

    def on_signal(signum: int, frame: object) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            os._exit(130)
        runner.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch = ParentWatch(runner, parent_pid) if parent_pid else None
    if watch is not None:
        watch.start()
    if served is not None:
        served.start()
    try:
        runner.run()
    finally:
        if served is not None:
            served.stop()
        if watch is not None:
            watch.finished()


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


@click.group()
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


COMMANDS = [up, server, agent, db]
