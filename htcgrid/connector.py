"""HTC-Grid's client API, unchanged for its users: ``AWSConnector`` (alias ``GridConnector``).

A program written for HTC-Grid runs with one changed import::

    from htcgrid.connector import AWSConnector

    connector = AWSConnector()
    connector.init(agent_config, username=username, password=password)
    connector.authenticate()
    submission = connector.send([{"worker_arguments": ["1000", "1", "1"]}])
    results = connector.get_results(submission, timeout_sec=100)

From HTC-Grid's agent config it reads the API URL (``htcgrid_url``, else
``private_api_gateway_url`` when ``$INTRA_VPC`` is set, else ``public_api_gateway_url``), the
API key (``api_gateway_key``, sent as ``x-api-key``) and ``dynamodb_results_pull_interval_sec``.
An HTC-Grid deployment runs one worker function; an htcgrid grid runs many, and the config key
``htcgrid_function`` names the one this connector's sessions run (default ``default``).
Underneath is ``htcgrid.client``: results arrive by long-polled pages, not by rescans.

Unlike HTC-Grid, a refreshed token is actually used, ``failed_OUTPUT`` carries each task's
error, and ``priority=`` on ``send`` sets the session's priority (HTC-Grid's
``context.tasks_priority``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from htcgrid.client import Client, HTTPTransport, TaskResult
from htcgrid.credentials import HeaderAuth, TokenAuth, choose_auth
from htcgrid.errors import AuthError, BackendUnavailable, ConfigurationError
from htcgrid.limits import TooManyRequests
from htcgrid.models import DEFAULT_FUNCTION, TaskState

log = logging.getLogger("htcgrid.connector")

TASK_TIMEOUT_SEC = 3600
RETRY_COUNT = 5
TOKEK_REFRESH_INTERVAL_SEC = 200  # HTC-Grid's name; tokens here refresh shortly before expiry
CANCELLED_OUTPUT = "cancelled"


def get_safe_session_id() -> str:
    return str(uuid.uuid1())


def api_url(config: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> str:
    private = config.get("private_api_gateway_url")
    public = config.get("public_api_gateway_url")
    chosen = config.get("htcgrid_url") or (
        private if environ.get("INTRA_VPC") and private else public or private
    )
    if not chosen:
        raise ConfigurationError(
            "the agent config names no API: set htcgrid_url (or public_api_gateway_url)"
        )
    return str(chosen).rstrip("/")


def _output_text(result: TaskResult) -> str:
    return json.dumps(result.output, ensure_ascii=False)


def _error_text(result: TaskResult) -> str:
    error = result.error or {}
    kind, message = error.get("type", "Error"), error.get("message", "")
    return f"{kind}: {message}" if message else kind


def results_response(results: Sequence[TaskResult]) -> dict[str, Any]:
    """HTC-Grid's get_results answer for these terminal tasks, in submission order."""
    ordered = sorted(results, key=lambda r: r.index)
    by_state = {s: [r for r in ordered if r.state is s] for s in TaskState}
    finished = by_state[TaskState.FINISHED]
    failed = by_state[TaskState.FAILED]
    cancelled = by_state[TaskState.CANCELLED]
    return {
        "finished": [r.task_id for r in finished],
        "finished_OUTPUT": [_output_text(r) for r in finished],
        "failed": [r.task_id for r in failed],
        "failed_OUTPUT": [_error_text(r) for r in failed],
        "cancelled": [r.task_id for r in cancelled],
        "cancelled_OUTPUT": [CANCELLED_OUTPUT for _ in cancelled],
        "metadata": {"tasks_in_response": len(ordered)},
    }


class AWSConnector:
    """HTC-Grid's ``api.connector.AWSConnector``: ``init``, ``authenticate``, ``send``,
    ``get_results``, ``cancel_sessions``."""

    def __init__(self) -> None:
        self.url = ""
        self.username = ""
        self.password = ""
        self.api_key: str | None = None
        self.function = DEFAULT_FUNCTION
        self.results_pull_interval_sec = 0.5
        self.auth: httpx.Auth | None = None
        self.client: Client | None = None

    def init(
        self,
        agent_config_data: Mapping[str, Any],
        username: str = "",
        password: str = "",
        cognitoidp_client: Any = None,
        s3_custom_resource: Any = None,
        redis_custom_connection: Any = None,
    ) -> None:
        """Read the agent config and prepare the connection (no request is sent yet)."""
        config = agent_config_data
        self.url = api_url(config)
        self.username, self.password = username or "", password or ""
        self.api_key = config.get("api_gateway_key") or None
        # htcgrid runs many functions on one grid; HTC-Grid one per deployment, named here
        self.function = str(config.get("htcgrid_function") or DEFAULT_FUNCTION)
        interval = config.get("dynamodb_results_pull_interval_sec", 0.5)
        self.results_pull_interval_sec = max(0.05, float(interval))
        self.auth = self._choose_auth()
        verify = config.get("htcgrid_ca_bundle") or True
        self.client = Client(HTTPTransport(self.url, auth=self.auth, verify=verify))

    def _choose_auth(self) -> httpx.Auth | None:
        """A password login (outside the VPC), else the API key, else ``htcgrid.connect``'s
        fallbacks (``$HTCGRID_TOKEN``, the stored login). A user name without a password
        (``$USERNAME`` is often just the login shell's) does not count as credentials."""
        login = bool(self.username and self.password)
        if self.api_key and (os.environ.get("INTRA_VPC") or not login):
            return HeaderAuth(api_key=self.api_key)
        if login:
            return TokenAuth(self.url, username=self.username, password=self.password)
        return choose_auth(self.url)

    @property
    def _client(self) -> Client:
        if self.client is None:
            raise ConfigurationError("call init(config) before using the connector")
        return self.client

    def _transport(self) -> HTTPTransport:
        transport = self._client._t
        assert isinstance(transport, HTTPTransport)
        return transport

    def authenticate(self) -> None:
        """Log in with the username and password given to ``init`` (nothing to do with an API
        key). The token is refreshed shortly before it expires, on the request that needs it."""
        if not isinstance(self.auth, TokenAuth):
            return
        try:
            self._transport().call("GET", "/v1/auth/whoami")
        except AuthError:
            log.exception("authentication failed for user %s", self.username)
            raise

    def refresh(self) -> None:
        """Refresh the access token now; a failure is logged, not raised (as in HTC-Grid)."""
        if not isinstance(self.auth, TokenAuth) or self.auth.tokens is None:
            return
        try:
            response = self._transport().http.send(self.auth.refresh_request(), auth=None)
            self.auth.take(response)
        except Exception:
            log.exception("token refresh failed")

    # ---- submitting ----------------------------------------------------------------------

    def generate_user_task_json(self, tasks_list: Sequence[Any]) -> dict[str, Any]:
        """HTC-Grid's submission envelope (the tasks travel inline)."""
        return {
            "session_id": get_safe_session_id(),
            "scheduler_data": {
                "task_timeout_sec": TASK_TIMEOUT_SEC,
                "retry_count": RETRY_COUNT,
                "tstamp_api_grid_connector_ms": 0,
                "tstamp_agent_read_from_sqs_ms": 0,
            },
            "stats": {"stage1_grid_api_01_task_creation_tstmp": {"label": " ", "tstmp": _ms()}},
            "tasks_list": {"tasks": list(tasks_list)},
        }

    def submit(self, jobs: Mapping[str, Any]) -> dict[str, Any]:
        """Submit an envelope from ``generate_user_task_json``; ``context.tasks_priority``
        sets the priority."""
        session_id = jobs.get("session_id")
        if session_id in (None, "None"):
            raise ConfigurationError("the envelope has no session_id")
        priority = int((jobs.get("context") or {}).get("tasks_priority", 0))
        session = self._client.submit(
            jobs["tasks_list"]["tasks"],
            priority=priority,
            session_id=str(session_id),
            function=self.function,
        )
        return {"session_id": session.id, "task_ids": session.task_ids}

    def send(self, tasks_list: Sequence[Any], priority: int | None = None) -> dict[str, Any]:
        """One session of these tasks: ``{"session_id", "task_ids"}`` (ids in list order)."""
        envelope = self.generate_user_task_json(tasks_list)
        if priority is not None:
            envelope["context"] = {"tasks_priority": priority}
        return self.submit(envelope)

    # ---- results and cancelling ----------------------------------------------------------

    def get_results(
        self, submission_response: Mapping[str, Any], timeout_sec: float = 0
    ) -> dict[str, Any]:
        """Wait until every task of the submission is terminal (``timeout_sec`` 0: forever),
        then return HTC-Grid's lists; after ``timeout_sec`` return what is there so far."""
        task_count = len(submission_response["task_ids"])
        session = self._client.session(submission_response["session_id"], task_count)
        deadline = time.monotonic() + timeout_sec if timeout_sec > 0 else None
        collected: dict[int, TaskResult] = {}
        while len(collected) < task_count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                log.warning("Get Results Timed Out")
                break
            try:
                for result in session.as_completed(left, after=len(collected)):
                    collected[result.index] = result
            except TimeoutError:
                continue
            except (BackendUnavailable, TooManyRequests) as exc:
                log.warning("get_results: %s; polling again", exc)
                time.sleep(self.results_pull_interval_sec)
        return results_response(list(collected.values()))

    def cancel_sessions(self, session_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Cancel each session: ``{session_id: {"cancelled_pending", "cancelled_processing",
        "total_cancelled_tasks"}}``."""
        answer = {}
        for session_id in session_ids:
            counts = self._client.session(session_id, 0).cancel()
            answer[session_id] = {
                k: int(counts[k])
                for k in ("cancelled_pending", "cancelled_processing", "total_cancelled_tasks")
            }
        return answer

    def cancel(self, session_id: str) -> dict[str, int]:
        return self.cancel_sessions([session_id])[session_id]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


GridConnector = AWSConnector


def _ms() -> int:
    return int(time.time() * 1000)
