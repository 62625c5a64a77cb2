"""The AWS Lambda Runtime API on loopback, for workers of runtime ``provided``.

The worker process serves ``/2018-06-01/runtime/invocation/next``, ``…/{id}/response``,
``…/{id}/error`` and ``/runtime/init/error`` to the package's ``bootstrap`` (env
``AWS_LAMBDA_RUNTIME_API`` and Lambda's own variables, see ``lambda_env``) and speaks the ordinary worker
protocol to its agent, so timeouts, crashes and cancellation work as for Python workers. The
worker leads a process group holding the bootstrap and whatever it starts; the agent kills
the whole group.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

from htcgrid.agent import lambda_env
from htcgrid.agent.channel import AgentChannel
from htcgrid.agent.messages import InitError, Ready, Task
from htcgrid.models import ErrorInfo

PREFIX = "/2018-06-01/runtime"
Invocation = tuple[str, bytes, float, str]  # request id, event, deadline (epoch ms), task id


class RuntimeState:
    def __init__(self, function_arn: str) -> None:
        self.function_arn = function_arn
        self.invocations: queue.Queue[Invocation] = queue.Queue()
        self.signals: queue.Queue[tuple[str, str, bytes]] = queue.Queue()


class RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeServer

    def do_GET(self) -> None:
        if self.path != f"{PREFIX}/invocation/next":
            return self._reply(404, b'{"errorMessage":"not found"}')
        state = self.server.state
        state.signals.put(("waiting", "", b""))
        request_id, event, deadline_ms, task_id = state.invocations.get()
        self._reply(
            200,
            event,
            {
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(deadline_ms)),
                "Lambda-Runtime-Invoked-Function-Arn": state.function_arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{task_id}",
            },
        )

    def do_POST(self) -> None:
        body = self._body()
        parts = self.path.removeprefix(PREFIX).strip("/").split("/")
        if parts == ["init", "error"]:
            self.server.state.signals.put(("init_error", "", body))
        elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
            self.server.state.signals.put((parts[2], parts[1], body))
        else:
            return self._reply(404, b'{"errorMessage":"not found"}')
        self._reply(202, b'{"status":"OK"}')

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RuntimeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: RuntimeState) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.state = state


def serve(channel: AgentChannel, config: Any) -> None:
    """The worker's main loop for runtime ``provided``; ``config`` is a WorkerConfig."""
    os.setpgrp()
    with tempfile.TemporaryFile() as log:
        _serve(channel, config, log)


def _serve(channel: AgentChannel, config: Any, log: IO[bytes]) -> None:
    root = lambda_env.task_root(config)
    state = RuntimeState(lambda_env.function_arn(config.function_name, config.region))
    server = RuntimeServer(state)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bootstrap = _start(config, root, server.server_address[1], log)
    init = _wait(bootstrap, state, "")
    if init[0] != "waiting":
        channel.send(InitError(_init_error(init, log)))
        bootstrap.kill()
        return
    channel.send(Ready())
    channel.start()
    while (task := channel.next_task()) is not None:
        channel.send(
            channel.run(
                task,
                lambda t, p: _invoke(t, p, bootstrap, state, log, config.log_limit_bytes),
            )
        )
    bootstrap.kill()


def _start(config: Any, root: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """The bootstrap, in the function's Lambda environment (``lambda_env``) plus the API."""
    env = {
        **os.environ,
        **lambda_env.variables(config),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
    }
    return subprocess.Popen(
        [os.path.join(root, "bootstrap")], cwd=root, env=env, stdout=log, stderr=log
    )


def _wait(bootstrap: subprocess.Popen[bytes], state: RuntimeState, request_id: str) -> Any:
    """The next signal about ``request_id`` (or the first ``waiting``), or the exit code."""
    while True:
        try:
            kind, rid, body = state.signals.get(timeout=0.05)
        except queue.Empty:
            if bootstrap.poll() is not None:
                return ("exited", bootstrap.returncode)
            continue
        if kind == "waiting" and request_id:
            continue
        if kind in ("waiting", "init_error") or rid == request_id:
            return (kind, body)


def _invoke(
    task: Task,
    payload: bytes,
    bootstrap: subprocess.Popen[bytes],
    state: RuntimeState,
    log: IO[bytes],
    limit: int,
) -> tuple[bool, bytes | ErrorInfo, str]:
    request_id = str(uuid.uuid4())
    start = log.seek(0, os.SEEK_END)
    deadline_ms = (time.time() + task.timeout_seconds) * 1000
    state.invocations.put((request_id, payload, deadline_ms, task.task_id))
    kind, body = _wait(bootstrap, state, request_id)
    if kind == "exited":
        sys.exit(1)  # the agent sees a crashed worker, as with a Python worker
    log.seek(start)
    text = log.read().decode(errors="replace")[-limit:]
    if kind == "response":
        try:
            value = json.loads(body)
        except ValueError:
            return False, ErrorInfo("InvalidResponse", body[:200].decode(errors="replace")), text
        return True, json.dumps(value, separators=(",", ":")).encode(), text
    return False, _error(body), text


def _error(body: bytes) -> ErrorInfo:
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(body)
        trace = data.get("stackTrace") or []
        trace = "\n".join(trace) if isinstance(trace, list) else str(trace)
        return ErrorInfo(
            str(data.get("errorType", "Error")), str(data.get("errorMessage", "")), trace
        )
    return ErrorInfo("Error", body.decode(errors="replace"))


def _init_error(init: Any, log: IO[bytes]) -> ErrorInfo:
    log.seek(0)
    output = log.read().decode(errors="replace")[-4000:]
    if init[0] == "exited":
        return ErrorInfo("BootstrapExited", f"bootstrap exited with code {init[1]}", output)
    error = _error(init[1])
    return ErrorInfo(error.type, error.message, error.traceback or output)
