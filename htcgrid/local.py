"""``htcgrid up``: a whole grid on this machine, supervised by one process.

The API and TTL checker run in this process; each agent is a child process in its own
session, so a Ctrl-C reaches only us and we stop the agents in order: they finish what they
run (within the grace period), then exit. Agents watch our pid and leave if we die.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

from htcgrid.auth import Authenticator
from htcgrid.credentials import (
    ADMIN_CREDENTIALS,
    read_admin_credentials,
    remember_grid,
    write_private,
)
from htcgrid.datadir import claim_data_dir
from htcgrid.errors import Conflict
from htcgrid.limits import SecurityConfig
from htcgrid.server import APIServer, bind
from htcgrid.settings import Settings

log = logging.getLogger("htcgrid.up")


class LocalGrid:
    def __init__(
        self,
        data_dir: Path,
        host: str,
        port: int,
        agents: int,
        slots: int,
        handler: str,
        paths: list[str],
        settings: Settings,
        security: SecurityConfig | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.security = security or SecurityConfig()
        self.tls = tls
        self.host, self.port = host, port
        self.agent_count, self.slots = agents, slots
        self.handler, self.paths = handler, [str(Path(p).resolve()) for p in paths]
        self.settings = settings
        self.store_url = f"sqlite://{self.data_dir / 'grid.db'}"
        self.data_url = f"file://{self.data_dir / 'blobs'}"
        self.agents: list[subprocess.Popen[bytes]] = []
        self.stop_requests = 0
        self._stop = threading.Event()

    def _agent_command(self, number: int) -> list[str]:
        s = self.settings
        command = [
            sys.executable, "-m", "htcgrid", "agent",
            "--url", self.store_url, "--data-url", self.data_url,
            "--slots", str(self.slots), "--handler", self.handler,
            "--heartbeat-seconds", str(s.heartbeat_seconds),
            "--lease-seconds", str(s.lease_seconds),
            "--grace-seconds", str(s.grace_seconds),
            "--parent-pid", str(_pid()),
        ]  # fmt: skip
        for path in self.paths:
            command += ["--path", path]
        return command

    def _start_agent(self, number: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self._agent_command(number), start_new_session=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop_requests += 1
        self._stop.set()
        if self.stop_requests > 1:
            for proc in self.agents:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)

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
        self.agents = [self._start_agent(i) for i in range(self.agent_count)]
        click.echo(
            f"htcgrid is up: {self.agent_count} agent(s) x {self.slots} slot(s), "
            f"handler {self.handler}, data in {self.data_dir}",
            err=True,
        )
        self._announce_access(api)
        click.echo(api.url)
        sys.stdout.flush()
        code = self._supervise()
        self._stop_agents()
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

    def _supervise(self) -> int:
        while not self._stop.wait(0.2):
            for i, proc in enumerate(self.agents):
                code = proc.poll()
                if code is None:
                    continue
                log.warning("agent %d exited with code %s; starting a new one", i, code)
                self.agents[i] = self._start_agent(i)
        return 0

    def _stop_agents(self) -> None:
        """Agents get the grace period to finish what they run; then each is killed with its
        process group (its workers and whatever their handlers started)."""
        for proc in self.agents:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.grace_seconds
        for proc in self.agents:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("agent %d did not stop within the grace period: killing it", proc.pid)
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # its own group, started by us
            proc.wait()


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


def _pid() -> int:
    return os.getpid()
