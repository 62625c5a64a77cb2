"""The client's hot path (submit, status, results) over ``http.client``: one kept-alive
connection, a connection the server closed replaced, the grid's errors raised as htcgrid's, and
httpx kept wherever the plain path does not apply (a proxy, https, a client swapped in)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from htcgrid.client.auth import HeaderAuth
from htcgrid.client.http import HTTPTransport
from htcgrid.client.plain_http import ONE_WRITE_BYTES, Connection, usable
from htcgrid.errors import NotFound, TooManyRequests


class Grid(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, int, str, bytes]] = []  # method, path, port, auth, body
        self.close_next = False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Grid

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization") or self.headers.get("x-api-key", "")
        self.server.seen.append((self.command, self.path, self.client_address[1], auth, body))
        status, reply, extra = 200, {"ok": True, "path": self.path}, {}
        if "missing" in self.path:
            status, reply = 404, {"error": {"code": "not_found", "message": "no session missing"}}
        elif "busy" in self.path:
            status, extra = 429, {"Retry-After": "3"}
            reply = {"error": {"code": "rate_limited", "message": "slow down"}}
        data = json.dumps(reply).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.server.close_next:  # an idle kept-alive connection the server let go of
            self.server.close_next = False
            self.close_connection = True

    do_GET = do_POST = _answer


@pytest.fixture
def grid() -> Iterator[Grid]:
    server = Grid()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_hot_path_keeps_one_connection_and_replaces_a_closed_one(grid: Grid) -> None:
    transport = HTTPTransport(f"http://127.0.0.1:{grid.server_port}", token="k", retry_seconds=0)
    assert transport._plain is not None
    assert transport.submit({"tasks": [1]})["path"] == "/v1/sessions"
    assert transport.status("s1", 0.5)["path"] == "/v1/sessions/s1?wait=0.5"
    grid.close_next = True
    transport.results("s1", 0, 10, 0)
    transport.results("s1", 1, 10, 2)
    transport.close()
    methods = [(m, p) for m, p, *_ in grid.seen]
    assert methods[0] == ("POST", "/v1/sessions")
    assert methods[-1] == ("GET", "/v1/sessions/s1/results?cursor=1&limit=10&wait=2")
    ports = [port for _, _, port, _, _ in grid.seen]
    assert ports[0] == ports[1] == ports[2] != ports[3]  # kept alive, then a new connection
    assert {auth for _, _, _, auth, _ in grid.seen} == {"Bearer k"}
    assert json.loads(grid.seen[0][4]) == {"tasks": [1]}


def test_the_grids_errors_are_raised_as_htcgrids(grid: Grid) -> None:
    transport = HTTPTransport(f"http://127.0.0.1:{grid.server_port}", retry_seconds=0)
    with pytest.raises(NotFound, match="no session missing"):
        transport.status("missing", 0)
    with pytest.raises(TooManyRequests) as busy:
        transport.results("busy", 0, 10, 0)
    assert busy.value.retry_after_seconds == 3
    transport.close()


def test_httpx_where_the_plain_path_does_not_apply(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{grid.server_port}"
    assert usable(url) and not usable("https://grid.example")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    assert not usable(url) and HTTPTransport(url)._plain is None
    monkeypatch.delenv("HTTP_PROXY")
    transport = HTTPTransport(url, retry_seconds=0)
    swapped: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        swapped.append(request.url.path)
        return httpx.Response(200, json={"via": "httpx"})

    transport.http = httpx.Client(base_url=url, transport=httpx.MockTransport(reply))
    assert transport.status("s1", 0) == {"via": "httpx"} and swapped == ["/v1/sessions/s1"]
    assert grid.seen == []


def test_a_fixed_credential_rides_the_plain_path(grid: Grid) -> None:
    url = f"http://127.0.0.1:{grid.server_port}"
    transport = HTTPTransport(url, auth=HeaderAuth(api_key="kk"), retry_seconds=0)
    assert transport._plain is not None
    transport.status("s1", 0)
    transport.close()
    assert [auth for *_, auth, _ in grid.seen] == ["kk"]  # sent as x-api-key


def test_a_submit_goes_out_in_one_write_with_nagle_off(
    grid: Grid, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    real_send = Connection.send

    def counting(self: Connection, data: Any) -> None:
        writes.append(bytes(data))
        real_send(self, data)

    monkeypatch.setattr(Connection, "send", counting)
    transport = HTTPTransport(f"http://127.0.0.1:{grid.server_port}", token="k", retry_seconds=0)
    body = {"tasks": ["x" * 1000]}
    assert transport.submit(body)["path"] == "/v1/sessions"
    assert len(writes) == 1 and writes[0].endswith(b"\r\n\r\n" + json.dumps(body).encode())
    assert json.loads(grid.seen[0][4]) == body  # the server read the whole body
    assert transport._plain is not None
    conn = transport._plain._local.conn
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    big = {"tasks": ["x" * (ONE_WRITE_BYTES + 1)]}
    writes.clear()
    transport.submit(big)
    assert len(writes) == 2 and json.loads(grid.seen[1][4]) == big  # head, then the body
    transport.close()
