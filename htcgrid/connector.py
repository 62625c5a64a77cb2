"""HTC-Grid's client API, unchanged for its users: ``AWSConnector`` (alias ``GridConnector``).

A program written for HTC-Grid runs with one changed import, or with none at all through
``python -m htcgrid.compat run client.py`` (which makes ``from api.connector import
AWSConnector`` import this module)::

    from htcgrid.connector import AWSConnector

    connector = AWSConnector()
    connector.init(agent_config, username=username, password=password)
    connector.authenticate()
    submission = connector.send([{"worker_arguments": ["1000", "1", "1"]}])
    results = connector.get_results(submission, timeout_sec=100)

From HTC-Grid's agent config it reads the API URL (``htcgrid_url``, else
``private_api_gateway_url`` when ``$INTRA_VPC`` is set, else ``public_api_gateway_url``), the
API key (``api_gateway_key``, sent as ``x-api-key``), ``dynamodb_results_pull_interval_sec``
and ``grid_storage_service`` (see ``htcgrid config check``). An HTC-Grid deployment runs one
worker function; an htcgrid grid runs many, and the config key ``htcgrid_function`` names
the one this connector's sessions run (default ``default``).

As HTC-Grid's module does, importing this one sets the root logger to INFO (through
``logging.basicConfig``, so a program's own logging set-up made before the import wins):
HTC-Grid's programs report through ``logging.info``. Nothing else in htcgrid touches logging.

Also as in HTC-Grid: answers are dicts that behave as its generated models too (attributes,
``to_dict()``), and a session id the grid does not know (or that belongs to another user)
gives empty results after the timeout and zero cancel counts, where ``htcgrid.Client``
raises ``NotFound``. Unlike HTC-Grid, a refreshed token is actually used, ``failed_OUTPUT``
carries each task's error, and ``priority=`` on ``send`` sets the session's priority
(HTC-Grid's ``context.tasks_priority``).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from htcgrid.client.auth import HeaderAuth, TokenAuth, choose_auth
from htcgrid.client.http import HTTPTransport
from htcgrid.client.session import PAGE, Client, TaskResult
from htcgrid.compat import grid_config
from htcgrid.compat.answers import Answer, cancel_answer, results_answer, submit_answer
from htcgrid.compat.dataplane import DataPlaneReader
from htcgrid.errors import (
    AuthError,
    BackendUnavailable,
    ConfigurationError,
    NotFound,
    TooManyRequests,
)
from htcgrid.models import DEFAULT_FUNCTION

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
log = logging.getLogger("htcgrid.connector")

TASK_TIMEOUT_SEC = 3600
RETRY_COUNT = 5
TOKEK_REFRESH_INTERVAL_SEC = 200  # HTC-Grid's name; tokens here refresh shortly before expiry


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
        self.in_out_manager = DataPlaneReader(lambda task_id: self._client.task(task_id))

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
        interval = grid_config.seconds(config, grid_config.RESULTS_POLL_KEY) or 0.5
        self.results_pull_interval_sec = max(0.05, interval)
        grid_config.storage_service(config)
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

    def submit(self, jobs: Mapping[str, Any]) -> Answer:
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
        return submit_answer(session.id, session.task_ids)

    def send(self, tasks_list: Sequence[Any], priority: int | None = None) -> Answer:
        """One session of these tasks: ``{"session_id", "task_ids"}`` (ids in list order),
        also readable as ``answer.session_id``."""
        envelope = self.generate_user_task_json(tasks_list)
        if priority is not None:
            envelope["context"] = {"tasks_priority": priority}
        return self.submit(envelope)

    # ---- results and cancelling ----------------------------------------------------------

    def get_results(self, submission_response: Mapping[str, Any], timeout_sec: float = 0) -> Answer:
        """Wait until every task of the submission is terminal (``timeout_sec`` 0: forever),
        then return HTC-Grid's lists; after ``timeout_sec`` return what is there so far
        (nothing, for a session the grid does not know)."""
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
                for result in session.as_completed(left, cursor=len(collected)):
                    collected[result.index] = result
            except TimeoutError:
                continue
            except (BackendUnavailable, TooManyRequests, NotFound) as exc:
                log.debug("get_results: %s; polling again", exc)
                self._pause(left)
        return results_answer(list(collected.values()))

    def _pause(self, left: float | None) -> None:
        time.sleep(max(0.0, min(self.results_pull_interval_sec, left or float("inf"))))

    def invoke_get_results_lambda(self, submission: Mapping[str, Any]) -> Answer:
        """HTC-Grid's raw ``/result`` answer for ``{"session_id": …}``, now, without waiting:
        the ids of the terminal tasks, with ``read_from_dataplane`` in place of the outputs
        (read them with ``in_out_manager`` or ``get_results``)."""
        session_id = str(submission["session_id"])
        transport = self._client._t
        results: list[TaskResult] = []
        try:
            while True:
                page = transport.results(session_id, len(results), PAGE, 0)
                results += [TaskResult.from_dict(item) for item in page["results"]]
                if not page["results"]:
                    break
        except NotFound:
            pass
        return results_answer(results, with_outputs=False)

    def cancel_sessions(self, session_ids: Sequence[str]) -> Answer:
        """Cancel each session: ``{session_id: {"cancelled_pending", "cancelled_processing",
        "total_cancelled_tasks"}}``; zero counts for a session the grid does not know."""
        answer = Answer()
        for session_id in session_ids:
            try:
                counts: dict[str, Any] | None = self._client.session(session_id, 0).cancel()
            except NotFound:
                counts = None
            answer[session_id] = cancel_answer(counts)
        return answer

    def cancel(self, session_id: str) -> Answer:
        """One session's cancel counts (HTC-Grid left this method unimplemented)."""
        answer: Answer = self.cancel_sessions([session_id])[session_id]
        return answer

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


GridConnector = AWSConnector


def _ms() -> int:
    return int(time.time() * 1000)
