"""``htcgrid up``: a whole grid on this machine, supervised by one process.

The API and TTL checker run in this process; each agent is a child process in its own
session (``htcgrid.local_agents``), so a Ctrl-C reaches only us and we stop the agents in order:
they finish what they run (within the grace period), then exit. Agents watch our pid and leave
if we die. With ``--agents MIN:MAX`` the number of agents follows the backlog.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

import click

from htcgrid.api.server import APIServer, bind
from htcgrid.auth.principals import Authenticator
from htcgrid.client.logins import (
    ADMIN_CREDENTIALS,
    read_admin_credentials,
    remember_grid,
    write_private,
)
from htcgrid.datadir import claim_data_dir
from htcgrid.errors import Conflict
from htcgrid.local_agents import AgentPool, PoolScaler
from htcgrid.scaling import DEFAULT_COOLDOWN_SECONDS, DEFAULT_TARGET_BACKLOG, ScalingPolicy
from htcgrid.settings import SecurityConfig, Settings

log = logging.getLogger("htcgrid.up")
TICK_SECONDS = 0.2  # how often dead agents are noticed
SCALE_POLL_SECONDS = 1.0  # how often the backlog is read to scale agents


class LocalGrid:
    def __init__(
        self,
        data_dir: Path,
        host: str,
        port: int,
        agents: int | tuple[int, int],
        slots: int | tuple[int, int],
        handler: str,
        paths: list[str],
        settings: Settings,
        security: SecurityConfig | None = None,
        tls: tuple[str, str] | None = None,
        target_backlog: float = DEFAULT_TARGET_BACKLOG,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        """``agents`` is a number, or MIN:MAX bounds to scale between on the backlog (a
        ``target_backlog`` of pending tasks per slot; scale-in ``cooldown_seconds`` after
        the last change)."""
        self.data_dir = data_dir.resolve()
        self.security = security or SecurityConfig()
        self.tls = tls
        self.host, self.port = host, port
        self.min_agents, self.max_agents = (agents, agents) if isinstance(agents, int) else agents
        self.min_slots, self.slots = (slots, slots) if isinstance(slots, int) else slots
        self.policy = None
        if self.max_agents > self.min_agents:
            self.policy = ScalingPolicy(
                self.min_agents, self.max_agents, target_backlog, self.slots, cooldown_seconds
            )
        self.handler, self.paths = handler, [str(Path(p).resolve()) for p in paths]
        self.settings = settings
        self.store_url = f"sqlite://{self.data_dir / 'grid.db'}"
        self.data_url = f"file://{self.data_dir / 'blobs'}"
        self.pool = AgentPool(self._agent_command, settings.grace_seconds)
        self.stop_requests = 0
        self._stop = threading.Event()

    def _agent_command(self, number: int) -> list[str]:
        s = self.settings
        command = [
            sys.executable, "-m", "htcgrid", "agent",
            "--url", self.store_url, "--data-url", self.data_url,
            "--slots", f"{self.min_slots}:{self.slots}", "--handler", self.handler,
            "--heartbeat-seconds", str(s.heartbeat_seconds),
            "--lease-seconds", str(s.lease_seconds),
            "--grace-seconds", str(s.grace_seconds),
            "--parent-pid", str(_pid()),
        ]  # fmt: skip
        for path in self.paths:
            command += ["--path", path]
        return command

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requests += 1
        self._stop.set()
        if self.stop_requests > 1:
            self.pool.kill()

    def run(self) -> int:
        sock = bind(self.host, self.port)  # first: a port in use leaves nothing on disk
        try:
            self.lock = claim_data_dir(self.data_dir)  # held while we run; refuses a second grid
        except BaseException:
            sock.close()
            raise
        api = APIServer(self.store_url, self.data_url, self.settings, sock, self.security, self.tls)
        api.start()
        remember_grid(api.url, self.data_dir)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        self.pool.grow(self.min_agents)
        click.echo(
            f"htcgrid is up: {self._describe_agents()} x {self.slots} slot(s), "
            f"handler {self.handler}, data in {self.data_dir}",
            err=True,
        )
        self._announce_access(api)
        click.echo(api.url)
        sys.stdout.flush()
        code = self._supervise(api)
        self.pool.stop()
        api.stop()
        click.echo("htcgrid stopped", err=True)
        return code

    def _announce_access(self, api: APIServer) -> None:
        if api.auth is None:
            click.secho(
                f"htcgrid: WARNING: authentication is OFF (--no-auth). Every user and program "
                f"on this machine can submit, read and cancel any session at {api.url}.",
                err=True,
                fg="red",
                bold=True,
            )
            return
        path = ensure_admin(api.auth, self.data_dir / ADMIN_CREDENTIALS, api.url)
        if path is not None:
            click.echo(
                f"htcgrid: admin credentials (user, password, API key) are in {path} "
                f"(readable by you only); log in with: htcgrid login --credentials {path}",
                err=True,
            )
        else:
            click.echo(f"htcgrid: log in with: htcgrid login --url {api.url}", err=True)

    def _describe_agents(self) -> str:
        if self.policy is None:
            return f"{self.min_agents} agent(s)"
        return (
            f"{self.min_agents}..{self.max_agents} agents (scaled on the backlog, "
            f"{self.policy.target_backlog:g} pending per slot)"
        )

    def _supervise(self, api: APIServer) -> int:
        """Restart dead agents (with backoff) and, with MIN:MAX, resize on the backlog."""
        scaler = None
        if self.policy is not None:
            scaler = PoolScaler(self.pool, api.service.store, self.policy, announce=_say)
        next_scale = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            self.pool.check()
            if scaler is not None and time.monotonic() >= next_scale:
                next_scale = time.monotonic() + SCALE_POLL_SECONDS
                scaler.tick()
        return 0


def ensure_admin(auth: Authenticator, path: Path, url: str) -> Path | None:
    """On a grid's first start, create user ``admin`` with a random password and an API key,
    and write them to ``path`` (mode 0600). Later starts update the URL in that file. Returns
    the file, or None when users exist but the file does not."""
    if not auth.has_users():
        password = secrets.token_urlsafe(18)
        try:
            auth.add_user("admin", password, "admin")
        except Conflict:
            return path if path.exists() else None
        _, api_key = auth.create_key("admin", "htcgrid up")
        found = {"user": "admin", "password": password, "api_key": api_key}
    else:
        try:
            found = read_admin_credentials(path)
        except (OSError, ValueError):
            return None
    write_private(path, json.dumps({**found, "url": url}, indent=2, sort_keys=True) + "\n")
    return path


def _say(text: str) -> None:
    click.echo(f"htcgrid: {text}", err=True)


def _pid() -> int:
    return os.getpid()
