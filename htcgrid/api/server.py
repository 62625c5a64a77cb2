"""Running the HTTP API (with its TTL checker) on a socket, in a thread of this process."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from htcgrid.api import create_app
from htcgrid.auth.principals import Authenticator
from htcgrid.backends import open_grid
from htcgrid.errors import ConfigurationError
from htcgrid.presence import QUIET_SECONDS
from htcgrid.service import GridService
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.ttl import TTLChecker

LOOPBACK = ("127.", "::1", "localhost")


def is_loopback(host: str) -> bool:
    return host.startswith(LOOPBACK) or host in ("::1", "[::1]")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back from ``getsockname``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it, "
            "or choose another --port (0 picks a free one)"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class APIServer:
    """The API and TTL checker of one grid, served from a background thread.

    Authentication is on unless ``security.auth`` is False, which only a loopback socket
    accepts. ``tls`` is ``(certificate file, key file)`` for HTTPS.
    """

    def __init__(
        self,
        url: str,
        data_url: str | None,
        settings: Settings,
        sock: socket.socket,
        security: SecurityConfig | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        security = security or SecurityConfig()
        host = sock.getsockname()[0]
        if not security.auth and not is_loopback(host):
            raise ConfigurationError(
                f"authentication can only be turned off on a loopback address, not {host}"
            )
        store, data = open_grid(url, data_url, record=True)
        self.service = GridService(store, data, settings, agent_grace_seconds=QUIET_SECONDS)
        self.auth = Authenticator(self.service.data, security) if security.auth else None
        if self.auth is not None:
            self.auth.start()
        self.ttl = TTLChecker(
            self.service.store,
            settings.ttl_check_seconds,
            purge=self.service.purge,
            purge_every_seconds=settings.purge_check_seconds,
        )
        app = create_app(self.service, self.ttl, self.auth, security)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="htcgrid-api", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"

    def start(self, timeout_seconds: float = 30) -> None:
        self.thread.start()
        self.service.releaser.start()  # task graphs: beside the TTL checker
        deadline = time.monotonic() + timeout_seconds
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.service.releaser.stop()
        self.service.store.close()
        self.service.data.close()
